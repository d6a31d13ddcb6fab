"""Small test media made with ffmpeg's lavfi sources: speech-like, loud music, clipped phone audio, video.

Everything is deterministic (fixed noise seeds), a few seconds to ~30 s long, and written where the caller says.
Quiet passages keep a faint noise floor rather than digital zero, as real recordings do.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

# Syllables at ~4 Hz, phrases broken by pauses; the 0.02 floor is the room tone in the pauses.
_SPEECH_ENVELOPE = "(0.6+0.4*sin(2*PI*4.3*t))*(0.02+gt(sin(2*PI*0.21*t+1.5*sin(0.37*t)),-0.25))"


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly with `args`, raising CalledProcessError with its stderr on failure."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True, capture_output=True, timeout=120,
    )


def speech_graph(rate: int, seconds: float, gain_db: float, seed: int = 7) -> str:
    """Return a filtergraph (output [o]) of speech-like amplitude-modulated noise."""
    return (
        f"anoisesrc=color=pink:amplitude=0.5:seed={seed}:r={rate}:d={seconds},highpass=f=120,lowpass=f=6000[n];"
        f"aevalsrc='{_SPEECH_ENVELOPE}':s={rate}:d={seconds}[e];"
        f"[n][e]amultiply,volume={gain_db}dB[o]"
    )


def speech(
    path: Path, *, seconds: float = 30, rate: int = 48000, gain_db: float = -3.0, codec: str = "pcm_s16le"
) -> Path:
    """Write mono speech-like audio at about -30 LUFS (the default gain) and return `path`."""
    ffmpeg("-filter_complex", speech_graph(rate, seconds, gain_db), "-map", "[o]", "-c:a", codec, str(path))
    return path


def music(path: Path, *, seconds: float = 20, rate: int = 44100) -> Path:
    """Write loud stereo 'music' (chords, beat and noise, squashed to about -8 LUFS) and return `path`."""
    graph = (
        f"aevalsrc='0.3*sin(2*PI*220*t)+0.2*sin(2*PI*277*t)+0.2*sin(2*PI*330*t)+0.3*sin(2*PI*55*t)*gt(sin(2*PI*2*t),0)"
        f"|0.3*sin(2*PI*247*t)+0.2*sin(2*PI*311*t)+0.2*sin(2*PI*370*t)+0.3*sin(2*PI*55*t)*gt(sin(2*PI*2*t),0)'"
        f":s={rate}:d={seconds}[t];"
        f"anoisesrc=color=pink:amplitude=0.3:seed=11:r={rate}:d={seconds},pan=stereo|c0=c0|c1=c0[n];"
        f"[t][n]amix=inputs=2:normalize=0,alimiter=limit=0.95:level=0[o]"
    )
    ffmpeg("-filter_complex", graph, "-map", "[o]", "-c:a", "pcm_s16le", str(path))
    return path


def clipped(path: Path, *, seconds: float = 20, rate: int = 44100, drive_db: float = 23.0) -> Path:
    """Write a phone-style recording: speech driven into hard clipping at 0 dBFS (16-bit), and return `path`.

    The default drive clips hard (about -5 LUFS); 17 dB gives about -10 LUFS with the loudest syllables clipped.
    """
    graph = speech_graph(rate, seconds, drive_db, seed=5) + ";[o]aformat=sample_fmts=s16[c]"
    ffmpeg("-filter_complex", graph, "-map", "[c]", "-c:a", "pcm_s16le", str(path))
    return path


# A buzz of narrow pulses at a wavering ~100 Hz, in syllables and phrases: its loudness sits in its peaks, so no
# compressor or limiter can bring the peaks in without taking the loudness with them.
_PULSES = "pow(0.5+0.5*cos(2*PI*(100*t+8*sin(2*PI*0.7*t))),400)*" + _SPEECH_ENVELOPE


def pulses(path: Path, *, seconds: float = 6, rate: int = 48000, gain_db: float = -13.9) -> Path:
    """Write a mono pulse buzz at about -35 LUFS, its true peak ~20 dB above that, and return `path`."""
    graph = f"aevalsrc='{_PULSES}':s={rate}:d={seconds},highpass=f=100,lowpass=f=6000,volume={gain_db}dB[o]"
    ffmpeg("-filter_complex", graph, "-map", "[o]", "-c:a", "pcm_s16le", str(path))
    return path


# Two sentences of a party lesson, about 7 s when espeak-ng speaks them.
LESSON_TEXT = "同志们好，今天我们学习党的二十大精神。基层党组织是党的全部工作的基础。"


def spoken(path: Path, *, lufs: float = -35.0, text: str = LESSON_TEXT, rate: int = 16000) -> Path:
    """Write espeak-ng's Mandarin reading of `text` as a phone would: AAC, mono, 16 kHz, at `lufs`; return `path`.

    espeak-ng's voice has sharp glottal pulses: its true peak stands about 21 dB above its loudness, as the
    close-miked phone recordings of village lessons do.
    """
    raw = path.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-v", "cmn", "-w", str(raw), text], check=True, capture_output=True, timeout=60)
    measured = subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-i", str(raw), "-af", "ebur128", "-f", "null", "-"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stderr
    integrated = float(re.search(r"I:\s+(-?[\d.]+) LUFS", measured[measured.rindex("Summary:"):]).group(1))
    ffmpeg("-i", str(raw), "-af", f"volume={lufs - integrated:.2f}dB", "-ar", str(rate), "-ac", "1",
           "-c:a", "aac", "-b:a", "48k", str(path))
    raw.unlink()
    return path


def video(
    path: Path,
    *,
    size: str = "1920x1080",
    seconds: float = 4,
    rate: int = 25,
    audio: bool = True,
    vcodec: str = "libx264",
) -> Path:
    """Write a test-pattern video with a speech-like sound track (or none) and return `path`."""
    args = ["-f", "lavfi", "-i", f"testsrc2=s={size}:r={rate}:d={seconds}"]
    if audio:
        args += ["-filter_complex", speech_graph(48000, seconds, 6.0), "-map", "0:v", "-map", "[o]", "-c:a", "aac"]
    codec = ["-c:v", vcodec] + (["-preset", "ultrafast", "-pix_fmt", "yuv420p"] if vcodec == "libx264" else [])
    ffmpeg(*args, *codec, "-t", str(seconds), str(path))
    return path
