"""Pure builders of ffprobe and ffmpeg argv lists (via ffmpeg-python's compile()); nothing here runs a process.

Every builder reads its input with `-protocol_whitelist` and `-format_whitelist`, so a file can only ever be what
the probe accepted, and it can open nothing but itself. Encodes are bit-exact (no encoder version strings, no
timestamps, no source metadata), so the same source and tags give the same bytes every time.

The audio chain, in order: downmix/format -> gain -> (compressor, only for speech too peaky for the limiter alone) ->
low-pass -> upsample x4 -> alimiter -> resample to the output rate -> encoder. The low-pass comes before the limiter
because the encoder's own low-pass would otherwise rebuild peaks the limiter took off (clipped phone recordings are
the worst case), and the limiter runs oversampled because it only sees sample peaks, while the target is a true-peak
one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import ffmpeg

from media.model import ProbeResult, SourceAnalysis
from media.profiles import PROFILES, Profile

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"
# Demuxers for reading back our own renditions when measuring them.
RENDITION_DEMUXERS = "mp3,mov,aac"
# Above this share of frames failing to decode, ffmpeg exits with an error instead of carrying on.
MAX_DECODE_ERROR_RATE = 0.1
# alimiter refuses a limit below 1/16 (-24.08 dB); a correction asking for less gets this and then misses its target.
ALIMITER_FLOOR_DB = -24.0
# acompressor's threshold range, 2^-10 .. 1.
ACOMPRESSOR_THRESHOLD_DB = (-60.2, 0.0)
RESAMPLER = "soxr"  # measured faster than swr for the x4 round trip, at equal or better quality

# The raw stream muxers a rendition is teed to, and the demuxer that reads each back.
_DEMUXER_FOR = {"mp3": "mp3", "adts": "aac"}
_BITEXACT = {"fflags": "+bitexact", "flags:a": "+bitexact"}
_QUIET = ("-nostdin", "-hide_banner", "-nostats", "-loglevel", "info")


def file_url(path: str | Path) -> str:
    """Return an absolute file: URL for ffmpeg, so a name with a colon is never taken for a protocol."""
    return "file:" + os.path.abspath(path)


def probe_argv(path: str | Path, format_whitelist: str) -> list[str]:
    """Return the ffprobe argv that reads `path` as JSON, allowed to open only that file with allowed demuxers."""
    return [
        FFPROBE,
        "-hide_banner",
        "-loglevel",
        "error",
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        format_whitelist,
        "-show_format",
        "-show_streams",
        "-print_format",
        "json",
        file_url(path),
    ]


def _source(src: str | Path, probe: ProbeResult, **options) -> ffmpeg.nodes.FilterableStream:
    """Return the ffmpeg-python input for a probed source, whitelisted to the one demuxer it was probed with."""
    return ffmpeg.input(file_url(src), protocol_whitelist="file", format_whitelist=probe.format_name, **options)


def _compile(stream, progress: bool = True) -> list[str]:
    """Compile an ffmpeg-python graph with our global options."""
    global_args = list(_QUIET) + (["-progress", "pipe:1"] if progress else [])
    return stream.global_args(*global_args).compile(cmd=FFMPEG, overwrite_output=True)


def _layout(channels: int) -> str:
    """Return the ffmpeg channel layout name for a rendition's channel count."""
    return "mono" if channels == 1 else "stereo"


def encode_gain_db(profile: Profile, probe: ProbeResult, analysis: SourceAnalysis) -> float:
    """Return the gain that brings the source, as the profile downmixes it, to the profile's loudness target."""
    measured = analysis.for_channels(profile.output_channels(probe))
    return round(profile.target_lufs - measured.integrated_lufs, 2)


@dataclass(frozen=True)
class Compression:
    """The compressor one source gets before the limiter, and the loudness it is expected to take."""

    # At the source's own level, before the gain: the chain raises it with the gain, so a corrected gain changes
    # the loudness and leaves what the compressor does to the speech alone.
    threshold_db: float
    ratio: float
    attack_ms: float
    release_ms: float
    makeup_db: float  # added to the gain of the first encode


def crest_excess_db(profile: Profile, probe: ProbeResult, analysis: SourceAnalysis) -> float | None:
    """Return how far the source's peaks would pass the limiter ceiling at the nominal gain (None: peak unknown)."""
    measured = analysis.for_channels(profile.output_channels(probe))
    if measured.peak_db is None:
        return None
    crest = measured.peak_db - measured.integrated_lufs
    return round(crest - (profile.limiter_ceiling_dbtp - profile.target_lufs), 2)


def compression_for(profile: Profile, probe: ProbeResult, analysis: SourceAnalysis) -> Compression | None:
    """Return the compressor this source needs to reach the target under the ceiling, or None (most speech)."""
    excess = crest_excess_db(profile, probe, analysis)
    spec = profile.compressor
    if excess is None or excess <= spec.max_limiting_db:
        return None
    measured = analysis.for_channels(profile.output_channels(probe))
    above = measured.peak_db - measured.integrated_lufs - spec.threshold_lu
    return Compression(
        threshold_db=round(measured.integrated_lufs + spec.threshold_lu, 2),
        ratio=spec.ratio,
        attack_ms=spec.attack_ms,
        release_ms=spec.release_ms,
        makeup_db=round(spec.makeup_share * above, 2),
    )


def first_gain_db(profile: Profile, probe: ProbeResult, analysis: SourceAnalysis) -> float:
    """Return the gain of the first encode: to the target, plus the loudness the compressor (if any) will take."""
    compression = compression_for(profile, probe, analysis)
    gain = encode_gain_db(profile, probe, analysis)
    return round(gain + compression.makeup_db, 2) if compression is not None else gain


def audio_chain(
    stream,
    profile: Profile,
    probe: ProbeResult,
    gain_db: float,
    ceiling_dbtp: float,
    compression: Compression | None = None,
):
    """Return `stream` with the profile's gain, compressor (if any), band limit and oversampled limiter applied."""
    channels = profile.output_channels(probe)
    rate = profile.output_sample_rate(probe)
    # Float from the start: gain and filters on s16 samples would clip before the limiter sees them.
    stream = stream.filter("aformat", sample_fmts="fltp", channel_layouts=_layout(channels))
    stream = stream.filter("volume", volume=f"{gain_db:.2f}dB")
    if compression is not None:
        low, high = ACOMPRESSOR_THRESHOLD_DB
        threshold = min(max(compression.threshold_db + gain_db, low), high)
        stream = stream.filter(
            "acompressor",
            threshold=f"{10 ** (threshold / 20):.6f}",
            ratio=compression.ratio,
            attack=compression.attack_ms,
            release=compression.release_ms,
            detection="peak",  # the peaks are what must come down, not the syllables' average
            link="maximum",  # a stereo pair is held down by its louder side, keeping the image
        )
    for _ in range(profile.lowpass_stages):
        stream = stream.filter("lowpass", f=profile.lowpass_hz, poles=2)
    stream = stream.filter("aresample", rate * profile.oversample, resampler=RESAMPLER)
    stream = stream.filter(
        "alimiter",
        limit=f"{10 ** (max(ceiling_dbtp, ALIMITER_FLOOR_DB) / 20):.6f}",
        attack=profile.limiter_attack_ms,
        release=profile.limiter_release_ms,
        level=0,  # level=1 would scale the output back up to 0 dBFS
        latency=1,  # compensate the look-ahead, keeping sound in sync with the picture
    )
    stream = stream.filter("aresample", rate, resampler=RESAMPLER)
    # Fixed sample format into the encoder, so a piped encode (run_pipeline) gets exactly the same samples.
    return stream.filter("aformat", sample_fmts="fltp")


def _audio_encoder_options(profile: Profile) -> dict[str, str]:
    """Return the output options of the profile's audio encoder."""
    options = {"c:a": profile.audio_codec, "b:a": profile.audio_bitrate}
    options.update(dict(profile.audio_options))
    return options


def scaled_size(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """Return the size that fits max_width x max_height keeping the aspect ratio, never larger, both even."""
    ratio = min(1.0, max_width / width, max_height / height)
    return max(2, int(width * ratio) // 2 * 2), max(2, int(height * ratio) // 2 * 2)


def video_chain(stream, profile: Profile, probe: ProbeResult):
    """Return the video stream capped in frame rate and scaled down (never up) to the profile's box."""
    spec = profile.video
    if probe.frame_rate and probe.frame_rate > spec.max_fps + 0.5:
        stream = stream.filter("fps", fps=spec.max_fps)
    width, height = scaled_size(probe.width, probe.height, spec.max_width, spec.max_height)
    stream = stream.filter("scale", width, height)
    return stream.filter("setsar", "1")


def _video_options(profile: Profile, probe: ProbeResult) -> dict[str, str]:
    """Return the H.264 encoder options of a video profile."""
    spec = profile.video
    fps = min(probe.frame_rate or 25.0, spec.max_fps)
    return {
        "c:v": spec.codec,
        "profile:v": spec.h264_profile,
        "preset:v": spec.preset,
        "crf": str(spec.crf),
        "maxrate:v": spec.maxrate,
        "bufsize:v": spec.bufsize,
        "pix_fmt": spec.pix_fmt,
        "g": str(max(1, round(fps * spec.keyframe_interval_s))),
        "threads:v": str(spec.threads),
        "flags:v": "+bitexact",
        # x264 writes its version and settings into an SEI NAL unit; dropping SEI units keeps version strings out.
        "bsf:v": "filter_units=remove_types=6",
    }


def encode_argv(
    profile: Profile,
    probe: ProbeResult,
    analysis: SourceAnalysis,
    src: str | Path,
    dst: str | Path,
    *,
    gain_db: float | None = None,
    ceiling_dbtp: float | None = None,
) -> list[str]:
    """Return the single ffmpeg argv that encodes `src` to `dst` with `profile` (gain from `analysis` by default)."""
    gain = first_gain_db(profile, probe, analysis) if gain_db is None else gain_db
    ceiling = profile.limiter_ceiling_dbtp if ceiling_dbtp is None else ceiling_dbtp
    compression = compression_for(profile, probe, analysis)
    source = _source(src, probe)
    streams = [audio_chain(source[str(probe.audio_stream_index)], profile, probe, gain, ceiling, compression)]
    options = _audio_encoder_options(profile)
    if profile.video is not None:
        streams.insert(0, video_chain(source[str(probe.video_stream_index)], profile, probe))
        options.update(_video_options(profile, probe))
    options.update(_BITEXACT)
    options.update(dict(profile.muxer_options))
    output = ffmpeg.output(*streams, file_url(dst), f=profile.muxer, map_metadata="-1", map_chapters="-1", **options)
    return _compile(output)


@dataclass(frozen=True)
class EncodePipeline:
    """An audio encode split over processes: condition | encode (file + raw stream) | measure the encoded stream."""

    condition: list[str]
    encode: list[str]
    measure: list[str]

    def argvs(self) -> list[list[str]]:
        """Return the stages in pipeline order, for runner.run_pipeline."""
        return [self.condition, self.encode, self.measure]


def encode_pipeline(
    profile: Profile,
    probe: ProbeResult,
    analysis: SourceAnalysis,
    src: str | Path,
    dst: str | Path,
    *,
    gain_db: float | None = None,
    ceiling_dbtp: float | None = None,
) -> EncodePipeline:
    """Return the three argvs that make the same bytes as encode_argv for an audio profile, using more cores.

    ffmpeg 5.1 runs filters and the encoder on one thread. Here the filters (the oversampled limiter) run in one
    process, the encoder in a second, and the encoded packets are also teed to a third that decodes and measures
    them, so the rendition's loudness is known when the encode ends.
    """
    if profile.video is not None or profile.measure_format is None:
        raise ValueError(f"profile {profile.name} cannot be encoded as an audio pipeline")
    gain = first_gain_db(profile, probe, analysis) if gain_db is None else gain_db
    ceiling = profile.limiter_ceiling_dbtp if ceiling_dbtp is None else ceiling_dbtp
    compression = compression_for(profile, probe, analysis)
    channels = profile.output_channels(probe)
    rate = profile.output_sample_rate(probe)

    source = _source(src, probe)[str(probe.audio_stream_index)]
    conditioned = audio_chain(source, profile, probe, gain, ceiling, compression)
    condition = _compile(ffmpeg.output(conditioned, "pipe:1", f="f32le", **{"c:a": "pcm_f32le"}), progress=False)

    pcm = ffmpeg.input(
        "pipe:0", f="f32le", sample_rate=str(rate), ch_layout=_layout(channels), protocol_whitelist="pipe"
    )
    options = _audio_encoder_options(profile)
    options.update(_BITEXACT)
    slaves = "|".join(
        [
            _tee_slave({"f": profile.muxer, **dict(profile.muxer_options)}, file_url(dst)),
            _tee_slave({"f": profile.measure_format}, "pipe:1"),
        ]
    )
    encoded = ffmpeg.output(pcm["a"], slaves, f="tee", map_metadata="-1", **options)
    encode = _compile(encoded, progress=False)

    measure = measure_argv(
        "pipe:0", mono=channels == 1, input_format=_DEMUXER_FOR[profile.measure_format], sample_rate=rate
    )
    return EncodePipeline(condition, encode, measure)


def _tee_slave(options: dict[str, str], url: str) -> str:
    """Return one tee muxer slave spec, '[k=v:k=v]url', with the tee syntax characters in `url` escaped."""
    escaped = "".join("\\" + ch if ch in "\\'|" else ch for ch in url)
    return "[" + ":".join(f"{key}={value}" for key, value in options.items()) + "]" + escaped


def poster_argv(probe: ProbeResult, src: str | Path, dst: str | Path, profile: Profile | None = None) -> list[str]:
    """Return the argv that writes one JPEG frame at the profile's poster point, scaled like the video."""
    profile = profile or PROFILES["terminal-video"]
    at = round(probe.duration_s * profile.video.poster_at, 3)
    source = _source(src, probe, ss=str(at))
    frame = video_chain(source[str(probe.video_stream_index)], profile, probe)
    output = ffmpeg.output(
        frame,
        file_url(dst),
        f="mjpeg",
        map_metadata="-1",
        **{
            "frames:v": "1",
            "q:v": str(profile.video.poster_quality),
            "pix_fmt": "yuvj420p",
            "fflags": "+bitexact",
            "flags:v": "+bitexact",
        },
    )
    return _compile(output)


def analysis_argv(
    src: str | Path,
    probe: ProbeResult,
    *,
    layouts: tuple[str, ...] = ("mono", "stereo"),
    true_peak: bool = True,
    max_duration_s: float | None = None,
) -> list[str]:
    """Return the one-pass argv that decodes all of `src` and measures each layout with an ebur128 named after it.

    A mono source has one layout only (its terminal renditions stay mono), so it gets one ebur128. Video is decoded
    too, into the null muxer, so damage in the picture shows up here rather than halfway through an encode.
    """
    wanted = [layout for layout in layouts if not (probe.channels == 1 and layout == "stereo")] or ["mono"]
    # The stop is put on each output: as an input option, ffmpeg 5.1 measures a stereo WAV whose layout it had to
    # guess as if it were the mono downmix.
    options = {"t": f"{max_duration_s:.3f}"} if max_duration_s else {}
    source = _source(src, probe)
    audio = source[str(probe.audio_stream_index)]
    branches = audio.filter_multi_output("asplit", len(wanted)) if len(wanted) > 1 else None
    outputs = []
    for i, layout in enumerate(wanted):
        branch = branches[i] if branches is not None else audio
        measured = branch.filter("aformat", sample_fmts="fltp", channel_layouts=layout).filter(
            f"ebur128@{layout}", peak="true" if true_peak else "sample", framelog="verbose"
        )
        outputs.append(ffmpeg.output(measured, "-", f="null", **options))
    if probe.video_stream_index is not None:
        outputs.append(ffmpeg.output(source[str(probe.video_stream_index)], "-", f="null", **options))
    merged = ffmpeg.merge_outputs(*outputs).global_args("-max_error_rate", str(MAX_DECODE_ERROR_RATE))
    return _compile(merged)


def measure_argv(
    src: str | Path, *, mono: bool, input_format: str | None = None, sample_rate: int | None = None
) -> list[str]:
    """Return the argv that measures an encoded rendition (file or pipe:0): ebur128 loudness and true peak.

    The true peak is the sample peak of the signal oversampled 4x by soxr (BS.1770's method). ebur128's own true
    peak resamples to 192 kHz with swr, which from 44.1 kHz is a fractional ratio and costs three times as much; the
    tests check both agree within 0.2 dB.
    """
    if str(src).startswith("pipe:"):
        source = ffmpeg.input(str(src), f=input_format, protocol_whitelist="pipe", format_whitelist=input_format)
    else:
        options = {"f": input_format} if input_format else {}
        source = ffmpeg.input(file_url(src), protocol_whitelist="file", format_whitelist=RENDITION_DEMUXERS, **options)
    audio = source["a:0"].filter("aformat", sample_fmts="fltp", **({"channel_layouts": "mono"} if mono else {}))
    # ebur128 passes the audio on unchanged, so one chain measures both, with no second output to feed.
    measured = audio.filter("ebur128@measure", peak="none", framelog="verbose")
    measured = measured.filter("aresample", 4 * sample_rate if sample_rate else 192000, resampler=RESAMPLER)
    measured = measured.filter("astats@truepeak", measure_perchannel="none", measure_overall="Peak_level")
    # pcm_f32le takes the filters' float samples as they are; the null muxer's default s16 would convert them.
    return _compile(ffmpeg.output(measured, "-", f="null", **{"c:a": "pcm_f32le"}))
