"""Errors the media pipeline raises: MediaError for a file we refuse, FfmpegError for a tool that failed.

A MediaError is user-facing. Its message names the file, says what is wrong and gives the limit or the fix, and its
code is stable so the API and the console can react to it. The wording helpers for durations, sizes and bit rates live
here because error messages are what they are for.
"""

from __future__ import annotations

import math


class MediaText(str):
    """A message with its English template (``str.format`` fields) and values kept, so the server can answer it in
    the reader's language from its catalogue. It is the English text; media itself translates nothing."""

    template: str
    params: dict

    def __new__(cls, template: str, **params) -> "MediaText":
        text = super().__new__(cls, template.format(**params))
        text.template, text.params = template, params
        return text


def _t(template: str, **params) -> MediaText:
    """A refusal's message, translatable later: ``_t("{name}: {size} is over the {limit} limit.", ...)``."""
    return MediaText(template, **params)


class MediaError(Exception):
    """A source file that lessoncast refuses, with a stable code and a message that says what to do."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        filename: str,
        limit: str | None = None,
        http_status: int = 422,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.text = message  # a MediaText: the server answers it in the reader's language
        self.message = str(message)
        self.filename = filename
        self.limit = limit
        self.http_status = http_status

    def to_dict(self) -> dict[str, str | None]:
        """Return the JSON shape the API sends: code, message, file and limit."""
        return {"code": self.code, "message": self.message, "file": self.filename, "limit": self.limit}

    def __repr__(self) -> str:
        return f"MediaError({self.code!r}, {self.message!r})"


class FfmpegError(Exception):
    """ffmpeg or ffprobe exited badly; keeps the argv and the last stderr lines for the job record."""

    def __init__(self, argv: list[str], returncode: int | None, tail: list[str], reason: str = "") -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.tail = list(tail)
        self.reason = reason
        last = tail[-1] if tail else "(no output)"
        what = reason or f"exited with status {returncode}"
        super().__init__(f"{argv[0] if argv else 'ffmpeg'} {what}: {last}")


class FfmpegTimeout(FfmpegError):
    """ffmpeg ran past its time limit and was killed."""


def format_duration(seconds: float) -> str:
    """Return a duration the way staff say it: '4 h 12 min', '3 min 20 s', '12 s'."""
    if not math.isfinite(seconds):
        return "an unknown length"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    if total == 0 and seconds > 0:
        return f"{seconds:.1f} s"
    return f"{secs} s"


def format_size(size_bytes: int) -> str:
    """Return a byte count in binary units as staff read them: '4 GB', '512 MB', '10 KB'."""
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size_bytes >= scale:
            value = size_bytes / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size_bytes} bytes"


def format_bitrate(bits_per_second: int) -> str:
    """Return a bit rate as '60 Mb/s' or '320 kb/s'."""
    if bits_per_second >= 1_000_000:
        value = bits_per_second / 1_000_000
        return f"{value:.0f} Mb/s" if value == int(value) else f"{value:.1f} Mb/s"
    return f"{bits_per_second // 1000} kb/s"
