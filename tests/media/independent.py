"""Measurements the tests make on their own, with plain ffmpeg/ffprobe, never through media's code."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path


def ebur128(path: Path) -> tuple[float, float]:
    """Return (integrated LUFS, true peak dBTP) of a file's first audio stream, in its own channel layout."""
    done = subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-i", str(path), "-map", "0:a:0",
         "-af", "ebur128=peak=true:framelog=verbose", "-f", "null", "-"],
        capture_output=True, text=True, check=True, timeout=120,
    )
    summary = done.stderr[done.stderr.rindex("Summary:"):]
    integrated = float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1))
    peak = float(re.search(r"Peak:\s+(-?[\d.]+|-inf) dBFS", summary).group(1))
    return integrated, peak


def ffprobe(path: Path) -> dict:
    """Return ffprobe's JSON (format and streams) for a file we made ourselves."""
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True, text=True, check=True, timeout=120,
    )
    return json.loads(done.stdout)


def top_level_boxes(path: Path) -> list[str]:
    """Return the order of an MP4 file's top-level boxes (ftyp, moov, mdat, ...)."""
    boxes = []
    data = path.read_bytes()
    offset = 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset:offset + 4], "big")
        kind = data[offset + 4:offset + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[offset + 8:offset + 16], "big")
        boxes.append(kind)
        if size < 8:
            break
        offset += size
    return boxes
