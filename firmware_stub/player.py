"""Audio out on a real device through a player process: mpv if installed, else ffplay, else aplay (WAV only).

The player runs in its own process group so ``stop`` also ends anything it spawned. mpv is driven over its JSON IPC
socket; ffplay and aplay have no control channel, so pause is SIGSTOP/SIGCONT of the group, their position is kept
from time.monotonic(), and a volume change restarts ffplay at the current position.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Mapping

from firmware_stub.hal import AudioError
from firmware_stub.probe import probe_duration

log = logging.getLogger(__name__)

PLAYERS = ("mpv", "ffplay", "aplay")
"""Players in order of preference."""

_STOP_GRACE = 2.0  # seconds a player gets to exit on SIGTERM before SIGKILL
_IPC_TIMEOUT = 1.0  # seconds for mpv to create its socket and to answer one command
_APLAY_FORMATS = {1: "U8", 2: "S16_LE", 3: "S24_3LE", 4: "S32_LE"}  # WAV sample width in bytes -> aplay -f


@dataclass(frozen=True)
class WavLayout:
    """Where the PCM samples of a WAV file start and how they are laid out, for feeding aplay from a position."""

    data_offset: int
    data_size: int
    channels: int
    rate: int
    sample_width: int

    @property
    def byte_rate(self) -> int:
        """Bytes per second of audio."""
        return self.channels * self.rate * self.sample_width


def wav_layout(path: Path) -> WavLayout | None:
    """The PCM layout of the WAV file PATH, or None if it is not a plain PCM WAV."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        fmt = None
        while chunk := f.read(8):
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", f.read(16))
                f.seek(size - 16 + (size & 1), 1)
                fmt = (tag, channels, rate, bits)
            elif cid == b"data":
                # tag 1 is integer PCM; 0xFFFE (extensible) is what ffmpeg writes for more than 2 channels or 24 bit
                if fmt is None or fmt[0] not in (1, 0xFFFE) or fmt[3] // 8 not in _APLAY_FORMATS:
                    return None
                return WavLayout(f.tell(), size, fmt[1], fmt[2], fmt[3] // 8)
            else:
                f.seek(size + (size & 1), 1)
    return None


class ProcessAudio:
    """Plays lesson files with the best installed player process."""

    def __init__(self, *, ffprobe: str = "ffprobe", search_path: str | None = None,
                 env: Mapping[str, str] | None = None, volume: int = 80) -> None:
        """SEARCH_PATH (like $PATH) is where players are looked for; ENV is the players' environment."""
        self._ffprobe = ffprobe
        self._search_path = search_path
        self._env = dict(env) if env is not None else None
        self._volume = min(100, max(0, int(volume)))
        self._muted = False
        self._runtime_dir: Path | None = None
        self._proc: subprocess.Popen | None = None
        self._stderr: IO[bytes] | None = None
        self._player = ""
        self._socket: Path | None = None
        self._path: Path | None = None
        self._duration: float | None = None
        self._start = 0.0
        self._t0 = 0.0
        self._paused_at: float | None = None
        self._paused_total = 0.0
        self._signal_paused = False
        self.last_error: str | None = None
        """What the player said when it last exited with an error."""

    # -- playing ---------------------------------------------------------------------------------------------

    def play(self, path: Path, position: float = 0.0) -> None:
        """Start PATH at POSITION seconds; raise AudioError if no player can play it or ffprobe rejects it."""
        path = Path(path)
        if not path.is_file():
            raise AudioError(f"{path}: no such file; download the lesson again")
        player, exe = self._choose(path)
        ffprobe = shutil.which(self._ffprobe, path=self._search_path)
        if ffprobe:
            duration: float | None = probe_duration(path, ffprobe)
        else:
            layout = wav_layout(path)
            duration = layout.data_size / layout.byte_rate if layout else None
        self.stop()
        self._path, self._duration, self._player = path, duration, player
        self._launch(exe, max(0.0, min(position, duration if duration is not None else position)))

    def pause(self) -> None:
        """Freeze playback; nothing happens unless playing."""
        if self.state() != "playing":
            return
        if self._player != "mpv" or self._ipc(["set_property", "pause", True]) is None:
            self._signal(signal.SIGSTOP)
            self._signal_paused = True
        self._paused_at = time.monotonic()

    def resume(self) -> None:
        """Continue after ``pause``; nothing happens unless paused."""
        if self.state() != "paused":
            return
        if self._signal_paused:
            self._signal(signal.SIGCONT)
            self._signal_paused = False
        else:
            self._ipc(["set_property", "pause", False])
        self._paused_total += time.monotonic() - self._paused_at
        self._paused_at = None

    def stop(self) -> None:
        """End the player process group; state becomes "idle"."""
        self._kill()
        self._path, self._duration = None, None

    def close(self) -> None:
        """Stop and remove the directory holding mpv's control socket."""
        self.stop()
        if self._runtime_dir is not None:
            shutil.rmtree(self._runtime_dir, ignore_errors=True)
            self._runtime_dir = None

    # -- volume ----------------------------------------------------------------------------------------------

    def set_volume(self, volume: int) -> None:
        """Set the volume (clamped to 0–100) now with mpv and ffplay; aplay keeps the mixer's volume."""
        self._volume = min(100, max(0, int(volume)))
        self._apply_volume(["set_property", "volume", self._volume])

    @property
    def volume(self) -> int:
        """The volume, 0–100."""
        return self._volume

    @property
    def muted(self) -> bool:
        """True when the volume is 0 or the mute flag is set."""
        return self._muted or self._volume == 0

    def set_muted(self, muted: bool) -> None:
        """Set or clear the mute flag, keeping the volume."""
        self._muted = bool(muted)
        self._apply_volume(["set_property", "mute", self._muted])

    # -- status ----------------------------------------------------------------------------------------------

    def state(self) -> str:
        """"idle", "playing", "paused" or "finished" (the player exited by itself at the end)."""
        if self._proc is None:
            return "idle"
        code = self._proc.poll()
        if code is None:
            return "paused" if self._paused_at is not None else "playing"
        if code == 0:
            return "finished"
        if self.last_error is None:
            self.last_error = f"{self._player} exited with {code}: {self._stderr_tail()}"
            log.error("%s: %s", self._path, self.last_error)
        return "idle"

    def position(self) -> float:
        """Seconds into the current file: asked from mpv, else counted from the start minus pauses."""
        state = self.state()
        if state == "idle":
            return 0.0
        if state == "finished" and self._duration is not None:
            return self._duration
        if self._player == "mpv" and state != "finished":
            answer = self._ipc(["get_property", "time-pos"])
            if answer is not None and isinstance(answer.get("data"), (int, float)):
                return float(answer["data"])
        until = self._paused_at if self._paused_at is not None else time.monotonic()
        elapsed = self._start + until - self._t0 - self._paused_total
        return min(elapsed, self._duration) if self._duration is not None else elapsed

    def current(self) -> Path | None:
        """The file given to ``play``; None after ``stop``."""
        return self._path

    def duration(self) -> float | None:
        """The file's length by ffprobe (or the WAV header); None when unknown or idle."""
        return self._duration

    @property
    def player(self) -> str:
        """The player of the current or last file ("mpv", "ffplay", "aplay"), "" before any."""
        return self._player

    # -- internals -------------------------------------------------------------------------------------------

    def _choose(self, path: Path) -> tuple[str, str]:
        """(name, executable) of the first installed player that can play PATH, else AudioError saying what to install."""
        aplay_found = False
        for name in PLAYERS:
            exe = shutil.which(name, path=self._search_path)
            if exe and name == "aplay" and wav_layout(path) is None:
                aplay_found = True
                continue
            if exe:
                return name, exe
        if aplay_found:
            raise AudioError(f"{path.name}: only aplay is installed and it plays PCM WAV only; "
                             "install mpv (apt install mpv) or ffmpeg (apt install ffmpeg, for ffplay)")
        raise AudioError(f"{path.name}: no audio player is installed (looked for {', '.join(PLAYERS)}); "
                         "install mpv (apt install mpv) or ffmpeg (apt install ffmpeg, for ffplay)")

    def _launch(self, exe: str, position: float) -> None:
        """Start the player for the current file at POSITION in a new process group."""
        assert self._path is not None
        stdin: IO[bytes] | int = subprocess.DEVNULL
        argv = self._argv(exe, position)
        if self._player == "aplay":
            layout = wav_layout(self._path)
            assert layout is not None  # _choose only picks aplay for PCM WAV
            # aplay cannot seek, so it reads raw samples from an inherited descriptor already positioned there.
            frame = layout.channels * layout.sample_width
            skip = min(int(position * layout.rate) * frame, layout.data_size)
            stdin = open(self._path, "rb")
            stdin.seek(layout.data_offset + skip)
            argv = [exe, "-q", "-t", "raw", "-f", _APLAY_FORMATS[layout.sample_width], "-r", str(layout.rate),
                    "-c", str(layout.channels), "-"]
        self._stderr = tempfile.TemporaryFile()
        self.last_error = None
        try:
            self._proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=self._stderr,
                                          start_new_session=True, env=self._env)
        except OSError as exc:
            raise AudioError(f"{self._path.name}: cannot start {self._player}: {exc}") from exc
        finally:
            if not isinstance(stdin, int):
                stdin.close()  # the child has its own copy of the descriptor
        self._start, self._t0 = position, time.monotonic()
        self._paused_at, self._paused_total, self._signal_paused = None, 0.0, False

    def _argv(self, exe: str, position: float) -> list[str]:
        """The command line for mpv or ffplay (aplay's is built in ``_launch``)."""
        volume = 0 if self._muted else self._volume
        target = str(self._path.absolute())
        if self._player == "mpv":
            if self._runtime_dir is None:
                self._runtime_dir = Path(tempfile.mkdtemp(prefix="lessoncast-mpv-"))
            self._socket = self._runtime_dir / "mpv.sock"
            return [exe, "--no-video", "--really-quiet", "--no-terminal", f"--start={position:.3f}",
                    f"--volume={self._volume}", f"--mute={'yes' if self._muted else 'no'}",
                    f"--input-ipc-server={self._socket}", "--", target]
        return [exe, "-nodisp", "-autoexit", "-hide_banner", "-loglevel", "error", "-ss", f"{position:.3f}",
                "-volume", str(volume), f"file:{target}"]

    def _apply_volume(self, command: list) -> None:
        """Send a volume/mute change to a running player: mpv over IPC, ffplay by restarting where it was."""
        state = self.state()
        if state not in ("playing", "paused"):
            return
        if self._player == "mpv":
            self._ipc(command)
        elif self._player == "ffplay":
            position, exe = self.position(), shutil.which("ffplay", path=self._search_path)
            if exe is None:
                log.warning("ffplay disappeared; the new volume applies to the next lesson")
                return
            self._kill()
            self._launch(exe, position)
            if state == "paused":
                self.pause()

    def _kill(self) -> None:
        """End the player's process group and wait for it."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                os.killpg(proc.pid, signal.SIGCONT)  # a SIGSTOPped player only acts on SIGTERM once continued
                proc.wait(_STOP_GRACE)
            except ProcessLookupError:
                pass  # it exited between poll and kill
            except subprocess.TimeoutExpired:
                log.warning("%s did not exit on SIGTERM within %g s; killing it", self._player, _STOP_GRACE)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _signal(self, sig: signal.Signals) -> None:
        """Send SIG to the player's process group."""
        if self._proc is not None:
            try:
                os.killpg(self._proc.pid, sig)
            except ProcessLookupError:
                pass  # it reached the end meanwhile; state() will say "finished"

    def _stderr_tail(self) -> str:
        """The last line the player wrote to stderr."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else "(no message)"

    def _ipc(self, command: list) -> dict | None:
        """mpv's answer to COMMAND over its IPC socket, or None (logged) when mpv does not answer."""
        if self._socket is None:
            return None
        deadline = time.monotonic() + _IPC_TIMEOUT
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(_IPC_TIMEOUT)
                while True:  # mpv creates the socket a moment after it starts
                    try:
                        sock.connect(str(self._socket))
                        break
                    except (FileNotFoundError, ConnectionRefusedError):
                        if time.monotonic() > deadline or self._proc is None or self._proc.poll() is not None:
                            raise
                        time.sleep(0.02)
                sock.sendall(json.dumps({"command": command, "request_id": 1}).encode() + b"\n")
                return _read_reply(sock)
        except (OSError, ValueError) as exc:
            log.warning("mpv did not answer %s: %s", command, exc)
            return None


def _read_reply(sock: socket.socket) -> dict:
    """The first line on SOCK answering our request (mpv interleaves event lines)."""
    buffer = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            raise ValueError("mpv closed the socket without answering")
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            reply = json.loads(line)
            if reply.get("request_id") == 1:
                if reply.get("error") not in (None, "success"):
                    raise ValueError(f"mpv: {reply['error']}")
                return reply
