"""Error shapes and the wording of durations, sizes and bit rates."""

from __future__ import annotations

import pytest

from media.errors import FfmpegError, MediaError, format_bitrate, format_duration, format_size


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (15120, "4 h 12 min"),
        (14400, "4 h"),
        (200, "3 min 20 s"),
        (120, "2 min"),
        (12, "12 s"),
        (0.4, "0.4 s"),
        (float("nan"), "an unknown length"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (4 * 1024**3, "4 GB"),
        (int(5.25 * 1024**3), "5.2 GB"),
        (512 * 1024**2, "512 MB"),
        (10 * 1024, "10 KB"),
        (100, "100 bytes"),
    ],
)
def test_format_size(size, text):
    assert format_size(size) == text


@pytest.mark.parametrize(("rate", "text"), [(60_000_000, "60 Mb/s"), (73_728_000, "73.7 Mb/s"), (320_000, "320 kb/s")])
def test_format_bitrate(rate, text):
    assert format_bitrate(rate) == text


def test_media_error_shape():
    error = MediaError("too_long", "lesson.mp3: 4 h 12 min is over the 4 h limit", filename="lesson.mp3", limit="4 h")
    assert (error.code, error.http_status, str(error)) == ("too_long", 422, error.message)
    assert error.to_dict() == {"code": "too_long", "message": error.message, "file": "lesson.mp3", "limit": "4 h"}


def test_ffmpeg_error_names_the_last_line():
    error = FfmpegError(["ffmpeg", "-i", "x"], 1, ["a", "x: No such file or directory"])
    assert str(error) == "ffmpeg exited with status 1: x: No such file or directory"
    assert error.tail == ["a", "x: No such file or directory"]
