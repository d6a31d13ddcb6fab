"""How long a lesson file plays, according to ffprobe, and whether it can be played at all.

Both the simulated and the Linux audio output refuse a file here before "playing" it, so a corrupt download is
reported the same way on a laptop and on a radio.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from firmware_stub.hal import AudioError

PROBE_TIMEOUT = 30.0  # seconds; a 2 h lesson on an SD card probes in well under a second


def probe_duration(path: Path, ffprobe: str = "ffprobe", *, timeout: float = PROBE_TIMEOUT) -> float:
    """Seconds PATH plays for; raise AudioError naming the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file; download the lesson again")
    # "file:" keeps a name with a colon or a leading dash from being read as a protocol or an option, and the
    # whitelist stops a crafted playlist file from making ffprobe open the network.
    argv = [ffprobe, "-v", "error", "-protocol_whitelist", "file",
            "-show_entries", "format=duration:stream=codec_type", "-of", "json", f"file:{path.absolute()}"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise AudioError(f"{path.name}: cannot check the file: {ffprobe} is not installed; install ffmpeg") from exc
    except subprocess.TimeoutExpired as exc:
        raise AudioError(f"{path.name}: ffprobe gave no answer within {timeout:g} s; the file may be damaged") from exc
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise AudioError(f"{path.name}: cannot be decoded ({reason}); download the lesson again")
    return _duration_of(path, proc.stdout)


def _duration_of(path: Path, report: str) -> float:
    """The duration in ffprobe's JSON REPORT, checked to be playable audio."""
    try:
        data = json.loads(report or "{}")
    except json.JSONDecodeError as exc:
        raise AudioError(f"{path.name}: ffprobe's answer was not JSON ({exc})") from exc
    if not any(s.get("codec_type") == "audio" for s in data.get("streams", [])):
        raise AudioError(f"{path.name}: has no audio stream; download the lesson again")
    raw = data.get("format", {}).get("duration")
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        raise AudioError(f"{path.name}: ffprobe reports no duration; download the lesson again") from None
    if not seconds > 0:
        raise AudioError(f"{path.name}: ffprobe reports a duration of {seconds:g} s; download the lesson again")
    return seconds
