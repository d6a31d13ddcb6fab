"""Table tests of the argv builders, and runs of what they build (ffmpeg-python's escaping must survive ffmpeg)."""

from __future__ import annotations

import math
import re
import subprocess

import pytest

from media.commands import (
    Compression,
    analysis_argv,
    compression_for,
    encode_argv,
    encode_gain_db,
    encode_pipeline,
    measure_argv,
    poster_argv,
    probe_argv,
    scaled_size,
)
from media.model import Loudness, ProbeResult, SourceAnalysis
from media.profiles import PROFILES
from media.runner import run, run_pipeline
from tests.media.independent import ffprobe

MONO_WAV = ProbeResult("wav", 600.0, 10_000_000, 705_600, "pcm_s16le", 1, 44100)
STEREO_MP3_48K = ProbeResult("mp3", 600.0, 10_000_000, 128_000, "mp3", 2, 48000)
SURROUND_MKV = ProbeResult("matroska,webm", 600.0, 10_000_000, 640_000, "ac3", 6, 32000)


def video(width: int, height: int, fps: float = 25.0) -> ProbeResult:
    """Return the probe of an MP4 with a video of the given size and a stereo AAC track."""
    return ProbeResult(
        "mov,mp4,m4a,3gp,3g2,mj2", 600.0, 50_000_000, 5_000_000, "aac", 2, 48000,
        "h264", width, height, True, audio_stream_index=1, video_stream_index=0, frame_rate=fps,
    )


# Clean speech: peaks about 14.5 dB above the loudness, which the limiter alone brings under the ceiling.
ANALYSIS = SourceAnalysis(600.0, mono=Loudness(-30.0, -15.5, 6.0), stereo=Loudness(-27.5, -13.0, 6.0))


def filters(argv: list[str]) -> list[str]:
    """Return the filter names of the -filter_complex graph, in order."""
    graph = argv[argv.index("-filter_complex") + 1]
    return [re.sub(r"^\[[^\]]*\]", "", part).split("=")[0].split("[")[0] for part in graph.split(";")]


def graph(argv: list[str]) -> str:
    """Return the -filter_complex value."""
    return argv[argv.index("-filter_complex") + 1]


def option(argv: list[str], name: str) -> str:
    """Return the value following the first `name` in argv."""
    return argv[argv.index(name) + 1]


@pytest.mark.parametrize(
    ("profile", "probe", "gain", "layout", "oversampled", "rate"),
    [
        ("radio", MONO_WAV, 14.0, "mono", 88200, 44100),
        ("radio", STEREO_MP3_48K, 14.0, "mono", 88200, 44100),  # radio measures the mono downmix
        ("radio", SURROUND_MKV, 14.0, "mono", 88200, 44100),
        ("terminal-audio", MONO_WAV, 14.0, "mono", 176400, 44100),  # mono stays mono, 44.1 kHz is allowed
        ("terminal-audio", STEREO_MP3_48K, 11.5, "stereo", 192000, 48000),
        ("terminal-audio", SURROUND_MKV, 11.5, "stereo", 192000, 48000),  # 32 kHz is not: resampled to 48 kHz
        ("terminal-video", video(1920, 1080), 11.5, "stereo", 192000, 48000),
    ],
)
def test_encode_argv_audio_chain(profile, probe, gain, layout, oversampled, rate):
    argv = encode_argv(PROFILES[profile], probe, ANALYSIS, "/in/src", "/out/dst")
    assert encode_gain_db(PROFILES[profile], probe, ANALYSIS) == gain
    text = graph(argv)
    assert f"volume=volume={gain:.2f}dB" in text
    assert f"channel_layouts={layout}" in text
    names = filters(argv)
    audio = names[names.index("aformat"):]
    # Band-limit, then oversample, then limit, then back to the output rate.
    assert audio[:7] == ["aformat", "volume", "lowpass", "lowpass", "aresample", "alimiter", "aresample"]
    assert f"aresample={oversampled}:resampler=soxr" in text and f"aresample={rate}:resampler=soxr" in text
    limit = float(re.search(r"limit=([\d.]+)", text).group(1))
    assert limit == pytest.approx(10 ** (PROFILES[profile].limiter_ceiling_dbtp / 20), rel=1e-5)
    assert "level=0" in text and "latency=1" in text


@pytest.mark.parametrize("profile", ["radio", "terminal-audio", "terminal-video"])
def test_encode_argv_is_whitelisted_bitexact_and_reports_progress(profile):
    probe = video(1280, 720) if profile == "terminal-video" else STEREO_MP3_48K
    argv = encode_argv(PROFILES[profile], probe, ANALYSIS, "/in/src", "/out/dst")
    assert option(argv, "-protocol_whitelist") == "file"
    assert option(argv, "-format_whitelist") == probe.format_name
    assert argv.index("-format_whitelist") < argv.index("-i")
    assert option(argv, "-i") == "file:/in/src" and argv[-1] != "file:/in/src"
    assert option(argv, "-map_metadata") == "-1"
    assert option(argv, "-fflags") == "+bitexact" and option(argv, "-flags:a") == "+bitexact"
    assert option(argv, "-progress") == "pipe:1" and "-nostats" in argv and "-nostdin" in argv
    assert option(argv, "-f") == PROFILES[profile].muxer
    assert "file:/out/dst" in argv


def test_radio_and_terminal_audio_encoder_options():
    radio = encode_argv(PROFILES["radio"], MONO_WAV, ANALYSIS, "/in/src", "/out/dst")
    assert (option(radio, "-c:a"), option(radio, "-b:a"), option(radio, "-id3v2_version")) == ("libmp3lame", "64k", "0")
    terminal = encode_argv(PROFILES["terminal-audio"], MONO_WAV, ANALYSIS, "/in/src", "/out/dst")
    assert option(terminal, "-c:a") == "aac" and option(terminal, "-aac_coder") == "fast"
    assert option(terminal, "-movflags") == "+faststart"


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1920, 1080), (1280, 720)),
        ((3840, 2160), (1280, 720)),
        ((1280, 720), (1280, 720)),
        ((640, 360), (640, 360)),  # never upscaled
        ((641, 361), (640, 360)),  # odd sizes rounded down to even, never up
        ((1440, 1080), (960, 720)),  # 4:3 keeps its shape
        ((1080, 1920), (404, 720)),  # portrait phone video fits the height
        ((720, 576), (720, 576)),
        ((2560, 1080), (1280, 540)),  # ultrawide fits the width
    ],
)
def test_scaling_fits_720p_keeps_aspect_and_never_upscales(size, expected):
    assert scaled_size(*size, 1280, 720) == expected
    argv = encode_argv(PROFILES["terminal-video"], video(*size), ANALYSIS, "/in/src", "/out/dst")
    assert f"scale={expected[0]}:{expected[1]}" in graph(argv)
    assert "setsar=1" in graph(argv)


def test_video_encoder_options():
    argv = encode_argv(PROFILES["terminal-video"], video(1920, 1080), ANALYSIS, "/in/src", "/out/dst")
    assert option(argv, "-c:v") == "libx264" and option(argv, "-profile:v") == "high"
    assert option(argv, "-pix_fmt") == "yuv420p" and option(argv, "-movflags") == "+faststart"
    assert option(argv, "-flags:v") == "+bitexact" and option(argv, "-threads:v") == "4"
    assert option(argv, "-g") == "50"
    maps = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-map"]
    assert len(maps) == 2  # one video, one audio stream; nothing else from the source


@pytest.mark.parametrize(("fps", "capped"), [(25.0, False), (30.0, False), (50.0, True), (59.94, True)])
def test_frame_rate_is_capped_at_30(fps, capped):
    argv = encode_argv(PROFILES["terminal-video"], video(1280, 720, fps), ANALYSIS, "/in/src", "/out/dst")
    assert ("fps=fps=30.0" in graph(argv)) is capped


def test_corrective_gain_and_ceiling_override_the_defaults():
    argv = encode_argv(PROFILES["radio"], MONO_WAV, ANALYSIS, "/in/src", "/out/dst", gain_db=3.25, ceiling_dbtp=-40.0)
    text = graph(argv)
    assert "volume=volume=3.25dB" in text
    assert "limit=0.063096" in text  # clamped to alimiter's floor of -24 dB


def speech(lufs: float, true_peak: float | None, sample_peak: float | None = None) -> SourceAnalysis:
    """Return the analysis of a mono source with these figures."""
    return SourceAnalysis(600.0, mono=Loudness(lufs, true_peak, 6.0, sample_peak), stereo=None)


# The radio's ceiling is -2.8 dBTP and the terminals' -2.0, against -16 LUFS: 13.2 and 14.0 dB of room for peaks.
# The limiter alone may take 4 dB more; beyond that a compressor comes first.
@pytest.mark.parametrize(
    ("profile", "analysis", "compressed"),
    [
        ("radio", speech(-30.0, -15.5), False),  # clean studio speech: 14.5 dB
        ("radio", speech(-26.0, -9.9), False),  # the benchmark's lesson: 16.1 dB
        ("radio", speech(-35.4, -13.8), True),  # the phone recording of the report: 21.6 dB
        ("radio", speech(-20.8, 0.1), True),  # espeak-ng's lesson: 20.9 dB
        ("radio", speech(-10.0, -0.3), False),  # clipped and loud: 9.7 dB, the gain goes down
        ("radio", speech(-5.3, 0.8), False),
        ("radio", speech(-30.0, -12.8), False),  # 17.2 dB: exactly 4 dB over, the limiter's share
        ("radio", speech(-30.0, -12.7), True),  # 17.3 dB: past it
        ("terminal-audio", speech(-30.0, -12.7), False),  # the terminals' higher ceiling leaves room for it
        ("terminal-audio", speech(-30.0, -11.9), True),
        ("radio", speech(-30.0, None, -12.0), True),  # a quick analysis: the sample peak decides
        ("radio", speech(-30.0, None, -13.0), False),
        ("radio", speech(-30.0, None, None), False),  # an analysis stored before peaks were kept: as before
    ],
)
def test_a_compressor_comes_only_where_the_peaks_need_it(profile, analysis, compressed):
    argv = encode_argv(PROFILES[profile], MONO_WAV, analysis, "/in/src", "/out/dst")
    names = filters(argv)
    chain = names[names.index("aformat"):names.index("alimiter")]
    if compressed:
        assert chain[:4] == ["aformat", "volume", "acompressor", "lowpass"]
        assert compression_for(PROFILES[profile], MONO_WAV, analysis) is not None
    else:
        assert chain == ["aformat", "volume", "lowpass", "lowpass", "aresample"]
        assert compression_for(PROFILES[profile], MONO_WAV, analysis) is None


def test_clean_speech_argv_is_unchanged():
    # The argv a clean lesson got before compressors existed, byte for byte: its renditions keep their sha256.
    argv = encode_argv(PROFILES["radio"], MONO_WAV, ANALYSIS, "/in/src", "/out/dst")
    assert graph(argv) == (
        "[0:0]aformat=channel_layouts=mono:sample_fmts=fltp[s0];[s0]volume=volume=14.00dB[s1];"
        "[s1]lowpass=f=11000:poles=2[s2];[s2]lowpass=f=11000:poles=2[s3];[s3]aresample=88200:resampler=soxr[s4];"
        "[s4]alimiter=attack=5.0:latency=1:level=0:limit=0.724436:release=50.0[s5];"
        "[s5]aresample=44100:resampler=soxr[s6];[s6]aformat=sample_fmts=fltp[s7]"
    )


def test_compressor_settings_and_makeup():
    phone = speech(-35.4, -13.8)
    compression = compression_for(PROFILES["radio"], MONO_WAV, phone)
    # Threshold 6 dB above the source's loudness; the makeup is 0.3 dB per dB the peaks reach above it.
    assert compression == Compression(threshold_db=-29.4, ratio=4.0, attack_ms=0.1, release_ms=50.0, makeup_db=4.68)
    argv = encode_argv(PROFILES["radio"], MONO_WAV, phone, "/in/src", "/out/dst")
    text = graph(argv)
    assert "volume=volume=24.08dB" in text  # 19.4 dB to the target, plus the makeup
    threshold = float(re.search(r"acompressor=[^\[]*threshold=([\d.]+)", text).group(1))
    assert threshold == pytest.approx(10 ** ((-29.4 + 24.08) / 20), rel=1e-5)  # -16 + 6 + the makeup, after the gain
    assert "detection=peak" in text and "link=maximum" in text and "ratio=4.0" in text


def test_a_corrected_gain_moves_the_compressor_threshold_with_it():
    # The correction changes the loudness, not what the compressor does to the speech: the threshold stays at the
    # same place relative to the signal.
    phone = speech(-35.4, -13.8)
    for gain in (24.08, 26.0, 20.5):
        text = graph(encode_argv(PROFILES["radio"], MONO_WAV, phone, "/in/src", "/out/dst", gain_db=gain))
        threshold = float(re.search(r"threshold=([\d.]+)", text).group(1))
        assert 20 * math.log10(threshold) - gain == pytest.approx(-29.4, abs=1e-4)


def test_pipeline_stages():
    stages = encode_pipeline(PROFILES["radio"], MONO_WAV, ANALYSIS, "/in/src", "/out/a|b's.mp3")
    assert option(stages.condition, "-format_whitelist") == "wav" and option(stages.condition, "-f") == "f32le"
    assert option(stages.encode, "-protocol_whitelist") == "pipe" and option(stages.encode, "-f") == "f32le"
    assert stages.encode[-2:-1] != ["-f"] and "tee" in stages.encode
    tee = next(arg for arg in stages.encode if arg.startswith("[f=mp3"))
    assert tee == "[f=mp3:id3v2_version=0]file:/out/a\\|b\\'s.mp3|[f=mp3]pipe:1"
    assert option(stages.measure, "-f") == "mp3" and option(stages.measure, "-protocol_whitelist") == "pipe"
    assert option(stages.measure, "-progress") == "pipe:1"
    with pytest.raises(ValueError):
        encode_pipeline(PROFILES["terminal-video"], video(1280, 720), ANALYSIS, "/in/src", "/out/x.mp4")


def test_probe_and_analysis_argv_are_whitelisted():
    argv = probe_argv("/in/src", "mp3,wav")
    assert option(argv, "-protocol_whitelist") == "file" and option(argv, "-format_whitelist") == "mp3,wav"
    argv = analysis_argv("/in/src", STEREO_MP3_48K, max_duration_s=14688)
    assert option(argv, "-t") == "14688.000" and argv.index("-t") > argv.index("-i")  # an output option
    assert "ebur128@mono=framelog=verbose:peak=true" in graph(argv)
    assert "ebur128@stereo=framelog=verbose:peak=true" in graph(argv)
    assert option(argv, "-max_error_rate") == "0.1"
    mono_only = analysis_argv("/in/src", STEREO_MP3_48K, layouts=("mono",), true_peak=False)
    # The sample peak costs next to nothing and tells whether the source needs a compressor.
    assert "asplit" not in graph(mono_only) and "peak=sample" in graph(mono_only)
    assert "ebur128@stereo" not in graph(analysis_argv("/in/src", MONO_WAV))  # mono source: one measurement
    assert option(measure_argv("/out/x.mp3", mono=True), "-format_whitelist") == "mp3,mov,aac"


# Running what the builders build.


@pytest.mark.parametrize(
    ("source", "profile"), [("speech", "radio"), ("music", "terminal-audio"), ("video_360p", "terminal-video")]
)
def test_built_encode_argv_runs(request, tmp_path, source, profile):
    src = request.getfixturevalue(source)
    dst = tmp_path / f"out.{PROFILES[profile].extension}"
    run(encode_argv(PROFILES[profile], src.probe, src.analysis, src.path, dst), duration_s=src.probe.duration_s)
    info = ffprobe(dst)
    assert float(info["format"]["duration"]) == pytest.approx(src.probe.duration_s, abs=0.15)


@pytest.mark.parametrize("profile", ["radio", "terminal-audio"])
def test_pipeline_makes_the_same_bytes_as_the_single_encode(speech, tmp_path, profile):
    odd_dir = tmp_path / "a|b's [dir]"
    odd_dir.mkdir()
    single, piped = tmp_path / "single", odd_dir / "piped"
    run(encode_argv(PROFILES[profile], speech.probe, speech.analysis, speech.path, single), duration_s=30)
    stages = encode_pipeline(PROFILES[profile], speech.probe, speech.analysis, speech.path, piped)
    run_pipeline(stages.argvs(), duration_s=30)
    assert single.read_bytes() == piped.read_bytes()


def test_built_poster_argv_runs(video_1080p, tmp_path):
    dst = tmp_path / "poster.jpg"
    argv = poster_argv(video_1080p.probe, video_1080p.path, dst)
    assert option(argv, "-ss") == "0.4" and argv.index("-ss") < argv.index("-i")
    run(argv, duration_s=None)
    stream = ffprobe(dst)["streams"][0]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("mjpeg", 1280, 720)


def test_built_measure_argv_runs(speech):
    rendition = speech.rendition("terminal-audio").path
    done = subprocess.run(measure_argv(rendition, mono=True), capture_output=True, text=True, check=True)
    assert "Summary:" in done.stderr
