"""Small media files made with ffmpeg for tests: tones, speech-like audio and video, in seconds not minutes."""

from __future__ import annotations

import subprocess
from pathlib import Path


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly; raise with its stderr on failure."""
    proc = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed: {proc.stderr}")


def tone(path: Path, seconds: float = 3.0, *, codec_args: tuple[str, ...] = (), volume_db: float = -20.0,
         frequency: int = 440) -> Path:
    """A sine tone at VOLUME_DB, encoded by the output extension (or CODEC_ARGS)."""
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency={frequency}:duration={seconds}:sample_rate=44100",
           "-af", f"volume={volume_db}dB", *codec_args, str(path))
    return path


def speech_like(path: Path, seconds: float = 8.0) -> Path:
    """Amplitude-modulated noise with pauses at a quiet level, like a phone recording of a talk."""
    ffmpeg("-f", "lavfi", "-i", f"anoisesrc=color=pink:duration={seconds}:sample_rate=44100:seed=7",
           "-af", "lowpass=3000,volume='0.2*(0.5+0.5*sin(2*PI*3*t))*gt(sin(2*PI*0.4*t),-0.3)':eval=frame",
           str(path))
    return path


def video(path: Path, width: int, height: int, seconds: float = 2.0) -> Path:
    """A test-pattern video with a tone."""
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=25:duration={seconds}",
           "-f", "lavfi", "-i", f"sine=frequency=300:duration={seconds}",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path))
    return path
