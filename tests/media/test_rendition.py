"""Renditions made with real ffmpeg from generated media, checked with independent ffmpeg/ffprobe/mutagen runs."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from mutagen.id3 import ID3

from media.errors import MediaError
from media.profiles import PROFILES
from media.rendition import corrected, make_rendition
from tests.media.conftest import TAGS
from tests.media import synth
from tests.media.independent import ebur128, ffprobe, top_level_boxes

CASES = [
    ("speech", "radio"),
    ("speech", "terminal-audio"),
    ("music", "radio"),
    ("music", "terminal-audio"),
    ("phone", "radio"),
    ("phone", "terminal-audio"),
    ("video_1080p", "radio"),
    ("video_1080p", "terminal-audio"),
    ("video_1080p", "terminal-video"),
    ("video_360p", "terminal-video"),
]


@pytest.mark.parametrize(("source", "profile"), CASES)
def test_output_meets_the_loudness_target_measured_independently(request, source, profile):
    result = request.getfixturevalue(source).rendition(profile)
    integrated, true_peak = ebur128(result.path)
    assert abs(integrated - -16.0) <= 1.0, f"{source}/{profile}: {integrated} LUFS"
    assert true_peak <= -1.0, f"{source}/{profile}: {true_peak} dBTP"
    # What the rendition reports is what an independent measurement finds.
    assert result.loudness.integrated_lufs == pytest.approx(integrated, abs=0.2)
    assert result.loudness.true_peak_dbtp == pytest.approx(true_peak, abs=0.2)


def test_clipped_phone_recording_needs_and_gets_limiting(phone):
    # The source is hard-clipped at 0 dBFS and loud: the encode turns it down and must not rebuild overs.
    assert phone.analysis.mono.true_peak_dbtp >= -0.5
    assert ebur128(phone.rendition("radio").path)[1] <= -1.0


@pytest.mark.parametrize("source", ["speech", "music", "video_1080p"])
def test_radio_is_mono_cbr_mp3_at_44k(request, source):
    result = request.getfixturevalue(source).rendition("radio")
    stream = ffprobe(result.path)["streams"][0]
    assert (stream["codec_name"], stream["channels"], stream["sample_rate"]) == ("mp3", 1, "44100")
    assert stream["bit_rate"] == "64000"
    assert result.path.suffix == ".mp3"
    assert result.duration_s == pytest.approx(request.getfixturevalue(source).analysis.decoded_duration_s, abs=0.1)


@pytest.mark.parametrize(("source", "channels", "rate"), [("speech", 1, "48000"), ("music", 2, "44100")])
def test_terminal_audio_is_aac_lc_keeping_mono_or_stereo(request, source, channels, rate):
    result = request.getfixturevalue(source).rendition("terminal-audio")
    info = ffprobe(result.path)
    stream = info["streams"][0]
    assert (stream["codec_name"], stream["profile"]) == ("aac", "LC")
    assert (stream["channels"], stream["sample_rate"]) == (channels, rate)
    assert "ipod" in info["format"]["format_name"] or "mp4" in info["format"]["format_name"]
    assert top_level_boxes(result.path).index("moov") < top_level_boxes(result.path).index("mdat")


def test_radio_tags_are_id3v23_utf16_chinese(speech):
    path = speech.rendition("radio").path
    tag = ID3(path)
    assert tag.version == (2, 3, 0)
    assert sorted(tag.keys()) == ["TALB", "TIT2", "TPE1"]
    for frame_id, key in (("TIT2", "title"), ("TPE1", "artist"), ("TALB", "album")):
        assert tag[frame_id].encoding == 1
        assert tag[frame_id].text == [TAGS[key]]
    # On disk: an ID3v2.3 header, and the title stored as UTF-16 with a byte-order mark.
    data = path.read_bytes()
    assert data[:5] == b"ID3\x03\x00"
    assert "第一课".encode("utf-16-le") in data


def test_1080p_becomes_720p_h264_high_with_faststart_and_poster(video_1080p):
    result = video_1080p.rendition("terminal-video")
    video, audio = ffprobe(result.path)["streams"]
    assert (video["codec_name"], video["profile"], video["width"], video["height"]) == ("h264", "High", 1280, 720)
    assert video["pix_fmt"] == "yuv420p"
    assert (audio["codec_name"], audio["profile"]) == ("aac", "LC")
    boxes = top_level_boxes(result.path)
    assert boxes.index("moov") < boxes.index("mdat")
    assert result.poster_path.read_bytes()[:3] == b"\xff\xd8\xff"
    poster = ffprobe(result.poster_path)["streams"][0]
    assert (poster["width"], poster["height"]) == (1280, 720)


def test_small_video_is_never_upscaled(video_360p):
    result = video_360p.rendition("terminal-video")
    video = ffprobe(result.path)["streams"][0]
    assert (video["width"], video["height"]) == (640, 360)
    poster = ffprobe(result.poster_path)["streams"][0]
    assert (poster["width"], poster["height"]) == (640, 360)


def test_no_version_strings_in_renditions(speech, video_1080p):
    radio = speech.rendition("radio").path.read_bytes()
    video = video_1080p.rendition("terminal-video").path.read_bytes()
    for data in (radio, video):
        assert b"Lavf5" not in data and b"Lavc5" not in data
    assert b"x264 - core" not in video


@pytest.mark.parametrize(
    ("source", "profile"), [("speech", "radio"), ("music", "terminal-audio"), ("video_360p", "terminal-video")]
)
def test_same_source_and_tags_give_the_same_bytes(request, tmp_path, source, profile):
    src = request.getfixturevalue(source)
    again = make_rendition(src.path, src.probe, src.analysis, PROFILES[profile], tmp_path, tags=TAGS)
    first = src.rendition(profile)
    assert again.sha256 == first.sha256
    assert again.path.name == first.path.name == f"{first.sha256}.{PROFILES[profile].extension}"
    assert again.poster_sha256 == first.poster_sha256


def test_other_tags_give_other_bytes(speech, tmp_path):
    other_tags = {**TAGS, "title": "第二课"}
    other = make_rendition(speech.path, speech.probe, speech.analysis, PROFILES["radio"], tmp_path, tags=other_tags)
    assert other.sha256 != speech.rendition("radio").sha256


def test_output_that_overshoots_gets_one_corrective_encode(speech, tmp_path):
    # A peak target just under what the normal encode reaches, so the first encode misses it by a little.
    ceiling = speech.rendition("radio").loudness.true_peak_dbtp - 0.2
    strict = dataclasses.replace(PROFILES["radio"], max_true_peak_dbtp=ceiling)
    result = make_rendition(speech.path, speech.probe, speech.analysis, strict, tmp_path, tags=TAGS)
    assert result.encodes == 2
    integrated, true_peak = ebur128(result.path)
    assert true_peak <= ceiling and abs(integrated - -16.0) <= 1.0


def test_a_missed_target_is_refused_and_leaves_no_files(speech, tmp_path):
    impossible = dataclasses.replace(PROFILES["radio"], max_true_peak_dbtp=-40.0, tolerance_lu=0.01)
    with pytest.raises(MediaError) as caught:
        make_rendition(
            speech.path, speech.probe, speech.analysis, impossible, tmp_path, tags=TAGS, display_name="第一课.wav"
        )
    assert caught.value.code == "loudness_target_missed"
    assert "第一课.wav" in caught.value.message and "LUFS" in caught.value.message and "dBTP" in caught.value.message
    assert "the encoder put its peaks back over the ceiling" in caught.value.message
    assert list(tmp_path.iterdir()) == []


def test_progress_rises_to_one(speech, tmp_path):
    seen: list[float] = []
    profile = PROFILES["terminal-audio"]
    make_rendition(speech.path, speech.probe, speech.analysis, profile, tmp_path, tags=TAGS, on_progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) >= 2


def test_result_serialises_for_the_job_record(speech):
    record = json.loads(json.dumps(speech.rendition("radio").to_dict()))
    assert record["sha256"] == speech.rendition("radio").sha256
    assert record["loudness"]["integrated_lufs"] == speech.rendition("radio").loudness.integrated_lufs


@pytest.mark.parametrize("profile", ["radio", "terminal-audio"])
@pytest.mark.parametrize(("source", "lufs", "crest"), [("quiet_phone", -35.0, 20.0), ("clipped_10", -10.0, 9.0)])
def test_quiet_peaky_and_clipped_speech_reach_the_target_under_the_ceiling(request, source, lufs, crest, profile):
    src = request.getfixturevalue(source)
    # The sources are what they claim, measured independently: the quiet one's peaks ~20 dB above its loudness,
    # the clipped one's flat tops at full scale.
    source_lufs, source_peak = ebur128(src.path)
    assert abs(source_lufs - lufs) <= 0.5 and source_peak - source_lufs >= crest
    integrated, true_peak = ebur128(src.rendition(profile).path)
    assert abs(integrated - PROFILES[profile].target_lufs) <= PROFILES[profile].tolerance_lu, integrated
    assert true_peak <= PROFILES[profile].max_true_peak_dbtp, true_peak


def test_a_quiet_result_is_refused_with_its_figures_and_the_reason(tmp_path):
    """A buzz whose loudness lives in its peaks cannot reach -16 LUFS under -1 dBTP; it is refused, not kept."""
    from tests.media.conftest import _source

    source = _source(tmp_path, synth.pulses(tmp_path / "buzz.wav"))
    with pytest.raises(MediaError) as caught:
        make_rendition(source.path, source.probe, source.analysis, PROFILES["radio"], source.out_dir,
                       tags=TAGS, display_name="buzz.wav")
    assert caught.value.code == "loudness_target_missed"
    message = caught.value.message
    assert re.search(r"measured -\d+\.\d LUFS and -\d+\.\d dBTP", message), message
    assert "too quiet, because the source's peaks stand 20." in message
    assert list(source.out_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("lufs", "tp", "gain", "ceiling"),
    [
        # Quiet with the limiter at work and 0.7 dB of encoder overshoot: the gain makes up the miss, and the
        # ceiling rises to where that overshoot lands the peaks 0.5 dB under -1 dBTP.
        (-17.1, -2.1, 5.9, -2.2),
        # Peaks over by 0.4 dB, 2.2 dB of overshoot: the ceiling comes down by the same rule.
        (-16.2, -0.6, 5.0, -3.7),
        # Quiet, peaks well under the ceiling: the limiter did nothing, so the overshoot is unknown; ceiling stays.
        (-17.4, -6.0, 6.2, -2.8),
        # Loud enough, but the peaks just over: the gain comes down to the target, and the ceiling too.
        (-15.5, -0.9, 4.3, -3.4),
    ],
)
def test_the_corrective_encode_aims_at_the_target_with_the_overshoot_it_measured(lufs, tp, gain, ceiling):
    assert corrected(PROFILES["radio"], 4.8, -2.8, lufs, tp) == (gain, ceiling)
