"""Probe an uploaded lesson source: sniff its content, run ffprobe under whitelists, and check it against Limits.

This is the synchronous check the upload request runs, so it reads headers only. Checks that need a full decode
(truncation, a declared length that the decode does not reach) run later in `media.analysis`; the one exception is a
WAV whose header declares more data than the file holds, which the header alone shows.
"""

from __future__ import annotations

import json
import os
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

from media.commands import file_url, probe_argv
from media.errors import MediaError, _t, format_bitrate, format_duration, format_size
from media.limits import Limits
from media.model import ProbeResult
from media.sniff import sniff
from media.wav_header import read_wav_declaration


def probe(path: str | Path, limits: Limits, display_name: str) -> ProbeResult:
    """Return the ProbeResult for `path`, or raise MediaError naming `display_name` and what is wrong."""
    size = os.path.getsize(path)
    if size == 0:
        raise MediaError(
            "empty_file", _t("{display_name}: the file is empty (0 bytes); upload it again",
                             display_name=display_name), filename=display_name
        )
    if size > limits.max_bytes:
        raise MediaError(
            "too_large",
            _t("{display_name}: {value} is over the {value2} limit",
               display_name=display_name, value=format_size(size), value2=format_size(limits.max_bytes)),
            filename=display_name,
            limit=format_size(limits.max_bytes),
            http_status=413,
        )
    _refuse_by_content(path, display_name)
    info = run_ffprobe(path, limits, display_name)
    result = check_probe(info, size, limits, display_name)
    if "wav" in result.format_name.split(","):
        _refuse_short_wav(path, limits, display_name)
    return result


def _refuse_short_wav(path: str | Path, limits: Limits, display_name: str) -> None:
    """Raise truncated if a WAV header declares more sound than the file holds (ffmpeg goes by the file size)."""
    declared = read_wav_declaration(path)
    if declared is None:
        return
    if declared.declared_s - declared.present_s > limits.duration_tolerance(declared.declared_s):
        raise MediaError(
            "truncated",
            _t("{display_name}: only {value} of the declared {value2} is in the file; it is cut short (an incomplete "
               "copy?), upload the complete file",
               display_name=display_name,
               value=format_duration(declared.present_s),
               value2=format_duration(declared.declared_s)),
            filename=display_name,
            limit=format_duration(declared.declared_s),
        )


def _refuse_by_content(path: str | Path, display_name: str) -> None:
    """Raise MediaError if the bytes are a playlist, a manifest or plain text, whatever the name says."""
    found = sniff(path)
    if found.verdict == "manifest":
        where = "" if not found.offset else f" (embedded at byte {found.offset})"
        raise MediaError(
            "playlist_refused",
            _t("{display_name}: this is {what}{where}, not a media file; playlists and manifests are refused, upload "
               "the audio or video file itself",
               display_name=display_name, what=found.what, where=where),
            filename=display_name,
        )
    if found.verdict == "text":
        raise MediaError(
            "not_media",
            _t("{display_name}: this is a text file, not audio or video; upload the recording itself",
               display_name=display_name),
            filename=display_name,
        )


def run_ffprobe(path: str | Path, limits: Limits, display_name: str) -> dict[str, Any]:
    """Return ffprobe's JSON for `path`, read under the protocol and demuxer whitelists; MediaError if unreadable."""
    argv = probe_argv(path, limits.format_whitelist())
    try:
        done = subprocess.run(argv, capture_output=True, timeout=limits.probe_timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MediaError(
            "not_media",
            _t("{display_name}: could not be read within {probe_timeout_s:.0f} s; it is damaged or not a media file",
               display_name=display_name, probe_timeout_s=limits.probe_timeout_s),
            filename=display_name,
        ) from exc
    stderr = done.stderr.decode("utf-8", "replace")
    if done.returncode != 0:
        if "not on whitelist" in stderr:
            raise MediaError(
                "container_not_allowed",
                _t("{display_name}: this kind of file is not accepted; upload MP3, M4A, WAV, FLAC, OGG, WMA, MP4, "
                   "MKV, AVI, WMV or MPEG audio or video",
                   display_name=display_name),
                filename=display_name,
                limit=", ".join(limits.allowed_demuxers),
            )
        raise MediaError(
            "not_media",
            _t("{display_name}: not a readable audio or video file ({value})",
               display_name=display_name, value=_last_line(stderr, path, display_name)),
            filename=display_name,
        )
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise MediaError(
            "not_media", _t("{display_name}: not a readable audio or video file",
                            display_name=display_name), filename=display_name
        ) from exc


def check_probe(info: dict[str, Any], size: int, limits: Limits, display_name: str) -> ProbeResult:
    """Return a ProbeResult from ffprobe's JSON if the source is within `limits`, else raise MediaError."""
    fmt = info.get("format") or {}
    format_name = fmt.get("format_name", "")
    if not limits.demuxer_allowed(format_name):
        raise MediaError(
            "container_not_allowed",
            _t("{display_name}: the {value} container is not accepted",
               display_name=display_name, value=format_name or 'unknown'),
            filename=display_name,
            limit=", ".join(limits.allowed_demuxers),
        )
    streams = info.get("streams") or []
    audio = _main_stream(streams, "audio")
    video = _main_stream([s for s in streams if not _is_picture(s)], "video")
    if audio is None:
        message = _t("{display_name}: it has pictures but no sound track; a lesson needs audio",
                     display_name=display_name) if video is not None else \
            _t("{display_name}: it has no sound track; a lesson needs audio", display_name=display_name)
        raise MediaError(
            "no_audio", message, filename=display_name
        )
    _check_codec(audio, limits.allowed_audio_codecs, "audio", display_name)
    sample_rate = int(audio.get("sample_rate") or 0)
    channels = int(audio.get("channels") or 0)
    if sample_rate <= 0 or channels <= 0:
        raise MediaError(
            "not_media",
            _t("{display_name}: the sound track cannot be read (no sample rate or channels)",
               display_name=display_name),
            filename=display_name,
        )
    if video is not None:
        _check_codec(video, limits.allowed_video_codecs, "video", display_name)
    duration = _duration(fmt, audio)
    if duration is None or duration <= 0:
        raise MediaError(
            "not_media", _t("{display_name}: cannot tell how long it is; the file is damaged",
                            display_name=display_name), filename=display_name
        )
    if duration > limits.max_duration_s:
        raise MediaError(
            "too_long",
            _t("{display_name}: {value} is over the {value2} limit; split the lesson into parts",
               display_name=display_name,
               value=format_duration(duration),
               value2=format_duration(limits.max_duration_s)),
            filename=display_name,
            limit=format_duration(limits.max_duration_s),
        )
    width = height = None
    if video is not None:
        width, height = displayed_size(video)
        _check_resolution(width, height, limits, display_name)
    bit_rate = _bit_rate(fmt, size, duration)
    if bit_rate is not None and bit_rate > limits.max_bitrate:
        raise MediaError(
            "bitrate_too_high",
            _t("{display_name}: {value} is over the {value2} limit; export it at a lower quality",
               display_name=display_name, value=format_bitrate(bit_rate), value2=format_bitrate(limits.max_bitrate)),
            filename=display_name,
            limit=format_bitrate(limits.max_bitrate),
        )
    return ProbeResult(
        format_name=format_name,
        duration_s=duration,
        size_bytes=size,
        bit_rate=bit_rate,
        audio_codec=audio["codec_name"],
        channels=channels,
        sample_rate=sample_rate,
        video_codec=video["codec_name"] if video is not None else None,
        width=width,
        height=height,
        has_video=video is not None,
        audio_stream_index=int(audio["index"]),
        video_stream_index=int(video["index"]) if video is not None else None,
        frame_rate=_frame_rate(video) if video is not None else None,
    )


def _is_picture(stream: dict[str, Any]) -> bool:
    """Return whether a video stream is cover art (an attached picture), which does not make a file a video."""
    disposition = stream.get("disposition") or {}
    return bool(disposition.get("attached_pic")) or bool(disposition.get("still_image"))


def _main_stream(streams: list[dict[str, Any]], codec_type: str) -> dict[str, Any] | None:
    """Return the default stream of `codec_type`, or the first one, or None."""
    candidates = [s for s in streams if s.get("codec_type") == codec_type]
    for stream in candidates:
        if (stream.get("disposition") or {}).get("default"):
            return stream
    return candidates[0] if candidates else None


def _check_codec(stream: dict[str, Any], allowed: tuple[str, ...], kind: str, display_name: str) -> None:
    """Raise codec_not_allowed unless the stream's codec is on the allowlist."""
    codec = stream.get("codec_name")
    if codec not in allowed:
        raise MediaError(
            "codec_not_allowed",
            _t("{display_name}: the {kind} codec {value} is not accepted; re-export it with one of {choices}, ...",
               display_name=display_name, kind=kind, value=codec or 'unknown', choices=', '.join(allowed[:6])),
            filename=display_name,
            limit=", ".join(allowed),
        )


def _check_resolution(width: int, height: int, limits: Limits, display_name: str) -> None:
    """Raise resolution_too_high if the picture is larger than the limit in either orientation."""
    long_side, short_side = max(width, height), min(width, height)
    max_long, max_short = max(limits.max_width, limits.max_height), min(limits.max_width, limits.max_height)
    if long_side > max_long or short_side > max_short:
        raise MediaError(
            "resolution_too_high",
            _t("{display_name}: {width}×{height} is over the {max_width}×{max_height} limit; export it at 4K or less",
               display_name=display_name,
               width=width,
               height=height,
               max_width=limits.max_width,
               max_height=limits.max_height),
            filename=display_name,
            limit=f"{limits.max_width}×{limits.max_height}",
        )


def displayed_size(stream: dict[str, Any]) -> tuple[int, int]:
    """Return a video stream's size as a player shows it: pixel aspect applied and rotation taken into account."""
    width, height = int(stream.get("width") or 0), int(stream.get("height") or 0)
    sar = _fraction(stream.get("sample_aspect_ratio"))
    if sar and sar != 1:
        width = int(round(width * sar))
    if abs(_rotation(stream)) % 180 == 90:
        width, height = height, width
    return width, height


def _rotation(stream: dict[str, Any]) -> int:
    """Return the display rotation in degrees from the display matrix side data or the legacy rotate tag."""
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            return int(float(side["rotation"]))
    rotate = (stream.get("tags") or {}).get("rotate")
    return int(float(rotate)) if rotate else 0


def _fraction(value: str | None) -> Fraction | None:
    """Return 'a:b' or 'a/b' as a Fraction, or None when missing or zero."""
    if not value:
        return None
    num, _, den = value.replace(":", "/").partition("/")
    try:
        if not den or int(den) == 0 or int(num) == 0:
            return None
        return Fraction(int(num), int(den))
    except ValueError:
        return None


def _frame_rate(stream: dict[str, Any]) -> float | None:
    """Return the stream's average frame rate, falling back to its nominal rate."""
    for key in ("avg_frame_rate", "r_frame_rate"):
        rate = _fraction(stream.get(key))
        if rate:
            return float(rate)
    return None


def _duration(fmt: dict[str, Any], audio: dict[str, Any]) -> float | None:
    """Return the declared duration in seconds: the container's, else the audio stream's."""
    for value in (fmt.get("duration"), audio.get("duration")):
        try:
            if value not in (None, "N/A"):
                return float(value)
        except ValueError:
            continue
    return None


def _bit_rate(fmt: dict[str, Any], size: int, duration: float) -> int | None:
    """Return the overall bit rate in bits/s: the container's figure, else size over duration."""
    value = fmt.get("bit_rate")
    if value not in (None, "N/A"):
        return int(value)
    return int(size * 8 / duration) if duration > 0 else None


def _last_line(text: str, path: str | Path, display_name: str) -> str:
    """Return the last line of ffprobe's stderr for the error message, with the server's path left out."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[-1].split("] ", 1)[-1] if lines else "no details"
    return line.replace(file_url(path), display_name).replace(os.path.abspath(path), display_name)
