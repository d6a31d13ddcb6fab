"""Probing real generated files, and the limit checks on ffprobe output."""

from __future__ import annotations

import json

import pytest

from media.errors import MediaError
from media.limits import Limits
from media.model import ProbeResult
from media.probe import check_probe, displayed_size, probe
from tests.media import synth


def test_speech_wav(speech):
    result = speech.probe
    assert (result.format_name, result.audio_codec) == ("wav", "pcm_s16le")
    assert (result.channels, result.sample_rate) == (1, 48000)
    assert result.duration_s == pytest.approx(30.0)
    assert not result.has_video and result.video_codec is None and result.width is None


def test_video_mp4(video_1080p):
    result = video_1080p.probe
    assert result.has_video and (result.video_codec, result.width, result.height) == ("h264", 1920, 1080)
    assert result.audio_codec == "aac" and result.frame_rate == 25.0
    assert result.video_stream_index != result.audio_stream_index


def test_cover_art_does_not_make_audio_a_video(corpus, tmp_path):
    case = next(c for c in corpus if c.filename == "with-cover-art.mp3")
    result = probe(case.write_to(tmp_path / "upload"), Limits(), case.filename)
    assert not result.has_video and result.video_codec is None and result.audio_codec == "mp3"


def test_probe_result_round_trips_through_json(video_1080p):
    stored = json.loads(json.dumps(video_1080p.probe.to_dict()))
    assert ProbeResult.from_dict(stored) == video_1080p.probe
    assert ProbeResult.from_dict({**stored, "added_in_a_later_version": 1}) == video_1080p.probe


def test_too_large_is_413_naming_size_and_limit(speech):
    with pytest.raises(MediaError) as caught:
        probe(speech.path, Limits(max_bytes=1024**2), "第一课.wav")
    error = caught.value
    assert (error.code, error.http_status, error.limit) == ("too_large", 413, "1 MB")
    assert error.message == "第一课.wav: 2.7 MB is over the 1 MB limit"


def test_too_long_with_a_small_limit(speech):
    with pytest.raises(MediaError) as caught:
        probe(speech.path, Limits(max_duration_s=20), "lesson.wav")
    assert caught.value.code == "too_long"
    assert caught.value.message.startswith("lesson.wav: 30 s is over the 20 s limit")


def test_disallowed_container_by_allowlist(speech):
    with pytest.raises(MediaError) as caught:
        probe(speech.path, Limits(allowed_demuxers=("mp3", "mov")), "lesson.wav")
    assert caught.value.code == "container_not_allowed"


def test_disallowed_audio_codec(speech):
    with pytest.raises(MediaError) as caught:
        probe(speech.path, Limits(allowed_audio_codecs=("mp3", "aac")), "lesson.wav")
    assert caught.value.code == "codec_not_allowed" and "pcm_s16le" in caught.value.message


def test_bitrate_and_resolution_limits(video_1080p):
    with pytest.raises(MediaError) as caught:
        probe(video_1080p.path, Limits(max_width=1280, max_height=720), "hd.mp4")
    assert caught.value.code == "resolution_too_high" and "1920×1080" in caught.value.message
    with pytest.raises(MediaError) as caught:
        probe(video_1080p.path, Limits(max_bitrate=1_000_000), "hd.mp4")
    assert caught.value.code == "bitrate_too_high"


def test_truncated_wav_is_caught_from_its_header(speech, tmp_path):
    data = speech.path.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError) as caught:
        probe(cut, Limits(), "recorder.wav")
    assert caught.value.code == "truncated"
    assert caught.value.message.startswith("recorder.wav: only 15 s of the declared 30 s is in the file")


def test_streamed_wav_with_unknown_size_is_accepted(tmp_path):
    # A WAV written to a pipe has 0xFFFFFFFF in its size fields; that is not a truncation.
    path = tmp_path / "streamed.wav"
    done = synth.speech(tmp_path / "src.wav", seconds=4)
    data = bytearray(done.read_bytes())
    at = data.index(b"data") + 4
    data[at:at + 4] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    assert probe(path, Limits(), "streamed.wav").duration_s == pytest.approx(4.0, abs=0.1)


def _info(streams, duration="60.0", bit_rate="128000", format_name="mp3"):
    """Return ffprobe JSON with the given streams and format fields."""
    return {"format": {"format_name": format_name, "duration": duration, "bit_rate": bit_rate}, "streams": streams}


AUDIO = {"index": 0, "codec_type": "audio", "codec_name": "mp3", "sample_rate": "44100", "channels": 2}


def picture(codec: str, width: int = 640, height: int = 360, **extra) -> dict:
    """Return an ffprobe video stream entry."""
    return {"index": 1, "codec_type": "video", "codec_name": codec, "width": width, "height": height, **extra}


@pytest.mark.parametrize(
    ("info", "code"),
    [
        (_info([AUDIO]), None),
        (_info([AUDIO], format_name="hls"), "container_not_allowed"),
        (_info([{**AUDIO, "codec_name": "speex"}]), "codec_not_allowed"),
        (_info([{**AUDIO, "sample_rate": "0", "channels": 0}]), "not_media"),
        (_info([picture("h264")], format_name="mov,mp4"), "no_audio"),
        (_info([AUDIO, picture("png", disposition={"attached_pic": 1})]), None),
        (_info([AUDIO, picture("ffv1")]), "codec_not_allowed"),
        (_info([AUDIO], duration="N/A", bit_rate="N/A"), "not_media"),
        (_info([AUDIO], duration="14401"), "too_long"),
        (_info([AUDIO], bit_rate="60000001"), "bitrate_too_high"),
        (_info([AUDIO, picture("h264", 2160, 3840)]), None),  # portrait 4K is 4K
        (_info([AUDIO, picture("h264", 4096, 2160)]), "resolution_too_high"),
        (_info([], format_name="mp3"), "no_audio"),
    ],
)
def test_check_probe_table(info, code):
    try:
        check_probe(info, 1_000_000, Limits(), "lesson")
    except MediaError as error:
        assert error.code == code
    else:
        assert code is None


@pytest.mark.parametrize(
    ("stream", "size"),
    [
        ({"width": 1920, "height": 1080}, (1920, 1080)),
        ({"width": 1920, "height": 1080, "side_data_list": [{"rotation": -90}]}, (1080, 1920)),
        ({"width": 1920, "height": 1080, "tags": {"rotate": "270"}}, (1080, 1920)),
        ({"width": 1440, "height": 1080, "sample_aspect_ratio": "4:3"}, (1920, 1080)),
        ({"width": 720, "height": 576, "sample_aspect_ratio": "0:1"}, (720, 576)),
    ],
)
def test_displayed_size_applies_rotation_and_pixel_aspect(stream, size):
    assert displayed_size(stream) == size
