"""The hardware a device exposes to the agent, as small protocols and one aggregate.

The agent only ever talks to these protocols; ``sim`` implements them for tests and the fleet simulator, ``linux``
for a Raspberry Pi village terminal or a party-lesson radio running Linux.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

KEYS = ("play_pause", "next", "previous", "volume_up", "volume_down", "menu")
"""Every key name ``Keys.poll`` may return."""

AUDIO_STATES = ("idle", "playing", "paused", "finished")
"""Every state ``AudioOut.state`` may return; "finished" means the file played to its end."""

CHECKIN_METHODS = ("card", "qr")
"""Every method ``CheckinReader.poll`` may report."""


class AudioError(Exception):
    """A file could not be played; the message names the file and what to do."""


@runtime_checkable
class Clock(Protocol):
    """Wall time (may be wrong: an RTC reset to 1970) and monotonic time (never goes back)."""

    def now(self) -> datetime:
        """Aware UTC wall time as the device believes it."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never decreases."""

    def sleep(self, seconds: float) -> None:
        """Block for SECONDS of clock time."""

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Like ``event.wait(timeout)`` with TIMEOUT in clock seconds; True when the event is set."""


@runtime_checkable
class AudioOut(Protocol):
    """One audio output playing one file at a time."""

    def play(self, path: Path, position: float = 0.0) -> None:
        """Start PATH at POSITION seconds, replacing what plays; raise AudioError if it cannot be played."""

    def pause(self) -> None:
        """Freeze playback at the current position."""

    def resume(self) -> None:
        """Continue after ``pause``."""

    def stop(self) -> None:
        """Stop playback; state becomes "idle"."""

    def set_volume(self, volume: int) -> None:
        """Set the volume, 0–100."""

    @property
    def volume(self) -> int:
        """The volume, 0–100."""

    @property
    def muted(self) -> bool:
        """True when nothing is audible: volume 0 or the mute flag set."""

    def set_muted(self, muted: bool) -> None:
        """Set or clear the mute flag, keeping the volume."""

    def position(self) -> float:
        """Seconds into the current file."""

    def state(self) -> str:
        """One of AUDIO_STATES."""

    def current(self) -> Path | None:
        """The file last given to ``play``, or None after ``stop``."""

    def duration(self) -> float | None:
        """Length of the current file in seconds, or None when unknown."""


@runtime_checkable
class Keys(Protocol):
    """The device's buttons."""

    def poll(self) -> list[str]:
        """Keys pressed since the last poll, oldest first, each one of KEYS."""


@runtime_checkable
class Battery(Protocol):
    """The battery, if any."""

    def level(self) -> int | None:
        """Charge in percent, or None on mains power."""

    def charging(self) -> bool:
        """True while the battery charges."""


@runtime_checkable
class Storage(Protocol):
    """Space on the filesystem holding the media directory."""

    def total_bytes(self) -> int:
        """Size of the media filesystem in bytes."""

    def free_bytes(self) -> int:
        """Bytes still free for media."""


@runtime_checkable
class Display(Protocol):
    """A status line or LED state."""

    def show(self, text: str) -> None:
        """Show TEXT as the current status."""

    @property
    def last(self) -> str:
        """The text shown last ("" before anything)."""


@runtime_checkable
class CheckinReader(Protocol):
    """A card or QR reader members check in with at a class session."""

    def poll(self) -> list[tuple[str, str]]:
        """Readings since the last poll as (method, credential), method one of CHECKIN_METHODS."""


@dataclass
class Hardware:
    """Everything a device has; ``checkin`` is None on radios, which have no reader."""

    clock: Clock
    audio: AudioOut
    keys: Keys
    battery: Battery
    storage: Storage
    display: Display
    checkin: CheckinReader | None
    kind: str  # "radio" or "terminal"
    firmware: str


DEVICE_KINDS = ("radio", "terminal")
"""Every ``Hardware.kind``."""
