"""Simulated hardware for tests, the laptop demo and the fleet simulator.

Everything runs on a ``SimClock``: tests move it with ``advance`` or step it from wake-up to wake-up with ``run_for``,
the demo (``--hal sim``) runs it at real time or faster, and ``set_wall`` fakes a radio whose RTC lost its battery.
Audio is checked with real ffprobe but never sounds.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable

from firmware_stub.hal import CHECKIN_METHODS, DEVICE_KINDS, KEYS, Hardware
from firmware_stub.probe import probe_duration

# How often (real seconds) a waiter on a caller's Event looks whether the clock moved. An Event can't be waited on
# together with our Condition, so a running clock's ``wait`` sleeps on the Event in slices this long, and a stepped
# clock's ``wait`` sleeps on the Condition in slices this long to notice the Event.
_ADVANCE_CHECK = 0.02

# Real seconds ``run_for`` waits for the waiters to be back before it gives up: far longer than any agent round.
STALL_S = 120.0


class ClockStalled(RuntimeError):
    """``run_for`` waited STALL_S real seconds and the threads it drives did not come back to waiting."""


class SimClock:
    """A clock running at SPEED times real time from START, which tests can also jump forward, or a STEPPED clock.

    A running clock (``speed``) moves with real time; on a busy machine a fast one moves on while the threads using
    it wait for the CPU, so a device can miss what it should have done in between. A stepped clock
    (``set_stepped``) stands still until ``run_for`` moves it from one waiter's deadline to the next, each time
    after every waiter has finished its round and waits again: what happens in clock time is then the same however
    slow the machine is.
    """

    def __init__(self, start: datetime, speed: float = 1.0, *, stepped: bool = False) -> None:
        if start.tzinfo is None:
            raise ValueError(f"SimClock start {start.isoformat()} has no timezone; pass an aware UTC datetime")
        if not speed > 0:
            raise ValueError(f"SimClock speed {speed!r} must be above 0")
        self._rate = 0.0 if stepped else float(speed)  # clock seconds per real second; 0 while stepped
        self._cond = threading.Condition()
        self._real0 = time.monotonic()
        self._mono0 = self._real0  # our monotonic starts where the real one stood, like a real boot would not be 0
        self._jumped = 0.0
        self._wall0 = start.astimezone(timezone.utc)
        self._wall_mono0 = self._mono0
        self._waiters: dict[object, tuple[float, threading.Event | None]] = {}  # every sleep/wait: deadline, event

    @property
    def speed(self) -> float:
        """Clock seconds per real second. A stepped clock has no speed and says 1.0, so that what waits on the real
        world (a broken link healing, an ack) waits as many clock seconds as real ones would."""
        return self._rate or 1.0

    @property
    def stepped(self) -> bool:
        """True while only ``run_for`` and ``advance`` move the clock."""
        return self._rate == 0

    def monotonic(self) -> float:
        """Clock seconds: real elapsed time times speed (none while stepped), plus every ``advance``."""
        return self._mono0 + (time.monotonic() - self._real0) * self._rate + self._jumped

    def now(self) -> datetime:
        """The wall time the device believes, moving with ``monotonic`` from the last ``set_wall``."""
        with self._cond:
            wall0, mono0 = self._wall0, self._wall_mono0
        return wall0 + timedelta(seconds=self.monotonic() - mono0)

    def set_speed(self, speed: float) -> None:
        """Run at SPEED from now on (ending stepped mode); time already passed stays as it was (no jump)."""
        if not speed > 0:
            raise ValueError(f"SimClock speed {speed!r} must be above 0")
        self._set_rate(float(speed))

    def set_stepped(self) -> None:
        """Stop here: from now on only ``run_for`` and ``advance`` move the clock, until ``set_speed``."""
        self._set_rate(0.0)

    def _set_rate(self, rate: float) -> None:
        with self._cond:
            current = self.monotonic()
            self._real0, self._mono0, self._jumped = time.monotonic(), current, 0.0
            self._rate = rate
            self._cond.notify_all()

    def advance(self, seconds: float) -> None:
        """Jump forward SECONDS at once, waking every ``sleep`` and ``wait`` to recheck its deadline."""
        if seconds < 0:
            raise ValueError(f"cannot advance a clock by {seconds} s; monotonic time never goes back")
        with self._cond:
            self._jumped += seconds
            self._cond.notify_all()

    def run_for(self, seconds: float, *, waiters: int = 1, stall_s: float = STALL_S) -> int:
        """Move a stepped clock SECONDS forward one wake-up at a time; return how many wake-ups that was.

        Each step waits until WAITERS threads are in ``sleep`` or ``wait`` with nothing to do (no deadline reached,
        no event set), then jumps to the earliest of their deadlines, so each finishes the round it was due before
        time moves again. A wake-up by an Event (another thread's message) is waited for the same way. Raises
        ClockStalled if the waiters are not all back within STALL_S real seconds.
        """
        if not self.stepped:
            raise ValueError("run_for drives a stepped clock; call set_stepped() first")
        if seconds < 0:
            raise ValueError(f"cannot run a clock for {seconds} s; monotonic time never goes back")
        with self._cond:
            target = self.monotonic() + seconds
            steps = 0
            while True:
                deadline = self._idle_deadline(waiters, stall_s)
                now = self.monotonic()
                if deadline > target:
                    self._jumped += target - now
                    self._cond.notify_all()
                    return steps
                self._jumped += max(0.0, deadline - now)
                steps += 1
                self._cond.notify_all()

    def _idle_deadline(self, waiters: int, stall_s: float) -> float:
        """The earliest deadline once WAITERS threads wait with nothing due (the caller holds the Condition)."""
        give_up = time.monotonic() + stall_s
        while True:
            now = self.monotonic()
            entries = list(self._waiters.values())
            woken = any(event is not None and event.is_set() for _deadline, event in entries)
            if len(entries) >= waiters and not woken and all(deadline > now for deadline, _event in entries):
                return min(deadline for deadline, _event in entries)
            if woken:
                self._cond.notify_all()  # a waiter sleeping on the Condition sees its Event at once
            left = give_up - time.monotonic()
            if left <= 0:
                raise ClockStalled(f"{len(entries)} of {waiters} threads came back to wait on the clock within "
                                   f"{stall_s:.0f} real seconds; one is stuck or not running (see its log)")
            self._cond.wait(min(left, _ADVANCE_CHECK))

    def set_wall(self, dt: datetime) -> None:
        """Make ``now()`` report DT from here on (a wrong or corrected RTC); ``monotonic`` is untouched."""
        if dt.tzinfo is None:
            raise ValueError(f"set_wall {dt.isoformat()} has no timezone; pass an aware UTC datetime")
        with self._cond:
            self._wall0 = dt.astimezone(timezone.utc)
            self._wall_mono0 = self.monotonic()

    def sleep(self, seconds: float) -> None:
        """Block until SECONDS of clock time have passed (real seconds / speed, or sooner via ``advance``)."""
        self.wait(None, seconds)

    def wait(self, event: threading.Event | None, timeout: float) -> bool:
        """Wait for EVENT up to TIMEOUT clock seconds; True if it was set."""
        token = object()
        with self._cond:
            deadline = self.monotonic() + max(0.0, timeout)
            self._waiters[token] = (deadline, event)
            self._cond.notify_all()  # a run_for may be waiting for this thread to be back
        try:
            while not (event is not None and event.is_set()):
                with self._cond:
                    left = deadline - self.monotonic()
                    if left <= 0:
                        break
                    if event is None or self._rate == 0:
                        # advance, run_for and set_speed notify; a stepped clock also looks at EVENT now and then
                        self._cond.wait(_ADVANCE_CHECK if self._rate == 0 else left / self._rate)
                        continue
                    rate = self._rate
                event.wait(min(left / rate, _ADVANCE_CHECK))
        finally:
            with self._cond:
                del self._waiters[token]
                self._cond.notify_all()
        return event is not None and event.is_set()


class SimAudio:
    """An audio output that checks files with ffprobe and plays them silently in clock time."""

    def __init__(self, clock: SimClock, ffprobe: str = "ffprobe", *, volume: int = 80) -> None:
        self._clock = clock
        self._ffprobe = ffprobe
        self._lock = threading.Lock()
        self._volume = _clamp_volume(volume)
        self._muted = False
        self._state = "idle"
        self._path: Path | None = None
        self._duration: float | None = None
        self._start = 0.0  # file position when the clock read _t0
        self._t0 = 0.0
        self._probed: dict[tuple, float] = {}  # (path, inode, size, mtime) of every file that probed well
        self.history: list[tuple[str, Path | None, float]] = []
        """Every (action, path, position): play, pause, resume, stop, finished, volume, mute, unmute."""

    def play(self, path: Path, position: float = 0.0) -> None:
        """Start PATH at POSITION seconds; raise AudioError if ffprobe cannot decode it."""
        path = Path(path)
        duration = self._probe(path)
        with self._lock:
            self._path, self._duration = path, duration
            self._start, self._t0 = min(max(0.0, position), duration), self._clock.monotonic()
            self._state = "playing"
            self.history.append(("play", path, self._start))
            self._check_end()

    def _probe(self, path: Path) -> float:
        """PATH's duration by ffprobe, once per version of the file: a terminal playing its slots for six weeks of
        simulated time would otherwise start ffprobe a hundred times on the same lesson."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return probe_duration(path, self._ffprobe)  # which says what is missing
        key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
        if key not in self._probed:
            self._probed[key] = probe_duration(path, self._ffprobe)
        return self._probed[key]

    def pause(self) -> None:
        """Freeze the position; nothing happens unless playing."""
        with self._lock:
            self._check_end()
            if self._state == "playing":
                self._start, self._state = self._position(), "paused"
                self.history.append(("pause", self._path, self._start))

    def resume(self) -> None:
        """Continue from the frozen position; nothing happens unless paused."""
        with self._lock:
            if self._state == "paused":
                self._t0, self._state = self._clock.monotonic(), "playing"
                self.history.append(("resume", self._path, self._start))

    def stop(self) -> None:
        """Stop and forget the file."""
        with self._lock:
            self.history.append(("stop", self._path, self._position()))
            self._state, self._path, self._duration, self._start = "idle", None, None, 0.0

    def set_volume(self, volume: int) -> None:
        """Set the volume, clamped to 0–100."""
        with self._lock:
            self._volume = _clamp_volume(volume)
            self.history.append(("volume", self._path, float(self._volume)))

    @property
    def volume(self) -> int:
        """The volume, 0–100."""
        return self._volume

    @property
    def muted(self) -> bool:
        """True when the volume is 0 or the mute flag is set."""
        return self._muted or self._volume == 0

    def set_muted(self, muted: bool) -> None:
        """Set or clear the mute flag; the volume is kept for unmuting."""
        with self._lock:
            self._muted = bool(muted)
            self.history.append(("mute" if muted else "unmute", self._path, self._position()))

    def position(self) -> float:
        """Seconds into the current file (0 when idle)."""
        with self._lock:
            self._check_end()
            return self._position()

    def state(self) -> str:
        """"idle", "playing", "paused" or "finished"."""
        with self._lock:
            self._check_end()
            return self._state

    def current(self) -> Path | None:
        """The file playing, paused or finished; None when idle."""
        return self._path

    def duration(self) -> float | None:
        """The current file's length in seconds, None when idle."""
        return self._duration

    def _position(self) -> float:
        """Position without locking or end check (callers hold the lock)."""
        if self._state != "playing":
            return self._start
        return min(self._start + self._clock.monotonic() - self._t0, self._duration or 0.0)

    def _check_end(self) -> None:
        """Turn "playing" into "finished" once the clock has passed the end of the file."""
        if self._state == "playing" and self._duration is not None \
                and self._start + self._clock.monotonic() - self._t0 >= self._duration:
            self._start, self._state = self._duration, "finished"
            self.history.append(("finished", self._path, self._duration))


class SimKeys:
    """Buttons pressed by a script of (clock seconds from creation, key) or by ``press``."""

    def __init__(self, clock: SimClock, script: Iterable[tuple[float, str]] = ()) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        t0 = clock.monotonic()
        self._pending = [(t0 + offset, n, _check_key(key)) for n, (offset, key) in enumerate(script)]
        self._seq = len(self._pending)

    def press(self, key: str) -> None:
        """Press KEY now; the next ``poll`` returns it."""
        with self._lock:
            self._pending.append((self._clock.monotonic(), self._seq, _check_key(key)))
            self._seq += 1

    def poll(self) -> list[str]:
        """Keys whose time has come since the last poll, in time order."""
        now = self._clock.monotonic()
        with self._lock:
            due = sorted(p for p in self._pending if p[0] <= now)
            self._pending = [p for p in self._pending if p[0] > now]
        return [key for _, _, key in due]


class SimBattery:
    """A battery draining DRAIN_PER_HOUR percent per clock hour, or mains power (level None)."""

    def __init__(self, clock: SimClock, level: float = 100.0, drain_per_hour: float = 2.0, mains: bool = False,
                 *, charge_per_hour: float = 25.0) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._level0 = min(100.0, max(0.0, float(level)))
        self._t0 = clock.monotonic()
        self.drain_per_hour = drain_per_hour
        self.charge_per_hour = charge_per_hour
        self.mains = mains
        self._charging = False

    def level(self) -> int | None:
        """Percent left, rounded; None on mains."""
        if self.mains:
            return None
        with self._lock:
            return round(self._exact())

    def charging(self) -> bool:
        """True while plugged into a charger."""
        return self._charging and not self.mains

    def charge(self, level: float = 100.0) -> None:
        """Set the charge to LEVEL percent at once (a swapped or fully charged battery)."""
        with self._lock:
            self._level0, self._t0 = min(100.0, max(0.0, float(level))), self._clock.monotonic()

    def set_charging(self, charging: bool) -> None:
        """Plug in (the level rises at CHARGE_PER_HOUR) or unplug (it drains again)."""
        with self._lock:
            self._level0, self._t0 = self._exact(), self._clock.monotonic()
            self._charging = bool(charging)

    def _exact(self) -> float:
        """The unrounded level now (callers hold the lock)."""
        hours = (self._clock.monotonic() - self._t0) / 3600.0
        rate = self.charge_per_hour if self._charging else -self.drain_per_hour
        return min(100.0, max(0.0, self._level0 + rate * hours))


class SimStorage:
    """A media filesystem of TOTAL_BYTES of which the files under PATH use some."""

    def __init__(self, path: Path, total_bytes: int) -> None:
        self.path = Path(path)
        self._total = int(total_bytes)

    def total_bytes(self) -> int:
        """The simulated size of the filesystem."""
        return self._total

    def free_bytes(self) -> int:
        """Total minus the bytes of every file under PATH, never below 0."""
        return max(0, self._total - self.used_bytes())

    def used_bytes(self) -> int:
        """Bytes of every regular file under PATH (0 if PATH does not exist yet)."""
        used = 0
        for root, _dirs, files in os.walk(self.path):
            for name in files:
                try:
                    used += os.lstat(os.path.join(root, name)).st_size
                except FileNotFoundError:
                    continue  # deleted between the walk and the stat: it uses nothing now
        return used


class SimDisplay:
    """A status line that remembers everything shown."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def show(self, text: str) -> None:
        """Show TEXT and add it to ``lines``."""
        self.lines.append(text)

    @property
    def last(self) -> str:
        """The text shown last ("" before anything)."""
        return self.lines[-1] if self.lines else ""


class SimCheckin:
    """A card/QR reader whose readings a test presents by hand."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[tuple[str, str]] = []

    def present(self, method: str, credential: str) -> None:
        """Queue a reading of CREDENTIAL by METHOD ("card" or "qr") for the next poll."""
        if method not in CHECKIN_METHODS:
            raise ValueError(f"check-in method {method!r} is not one of {', '.join(CHECKIN_METHODS)}")
        with self._lock:
            self._queue.append((method, credential))

    def poll(self) -> list[tuple[str, str]]:
        """Readings presented since the last poll, oldest first."""
        with self._lock:
            queued, self._queue = self._queue, []
        return queued


def sim_hardware(kind: str, media_dir: Path, *, clock: SimClock | None = None, total_bytes: int = 8 * 2**30,
                 firmware: str = "sim 1.0") -> Hardware:
    """Simulated hardware of KIND: a radio runs on battery without a reader, a terminal on mains with one."""
    if kind not in DEVICE_KINDS:
        raise ValueError(f"device kind {kind!r} is not one of {', '.join(DEVICE_KINDS)}")
    # The one place a default clock reads the real time: callers that care pass their own clock.
    clock = clock or SimClock(datetime.now(timezone.utc))
    radio = kind == "radio"
    return Hardware(clock=clock, audio=SimAudio(clock), keys=SimKeys(clock),
                    battery=SimBattery(clock, mains=not radio), storage=SimStorage(Path(media_dir), total_bytes),
                    display=SimDisplay(), checkin=None if radio else SimCheckin(), kind=kind, firmware=firmware)


def _check_key(key: str) -> str:
    """KEY if it is a known key name, else ValueError listing the names."""
    if key not in KEYS:
        raise ValueError(f"key {key!r} is not one of {', '.join(KEYS)}")
    return key


def _clamp_volume(volume: int) -> int:
    """VOLUME as an int within 0–100."""
    return min(100, max(0, int(volume)))
