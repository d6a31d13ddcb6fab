"""The hardware of a real device running Linux (a Raspberry Pi terminal or a Linux party-lesson radio).

Only the standard library is needed to import this module; ``evdev`` is imported inside the key and reader classes
that use it, and the audio player is whichever of mpv, ffplay or aplay is installed, found when a file is played.
"""

from __future__ import annotations

import importlib
import logging
import platform
import shutil
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from firmware_stub.hal import DEVICE_KINDS, Hardware
from firmware_stub.player import ProcessAudio

log = logging.getLogger(__name__)

__all__ = ["ConsoleDisplay", "EvdevKeys", "FsStorage", "HardwareMissing", "HidCheckin", "NoCheckin", "NoKeys",
           "ProcessAudio", "SysfsBattery", "SystemClock", "linux_hardware"]


class HardwareMissing(RuntimeError):
    """A hardware adapter cannot work here: its library or its device is missing. The message says which."""


class SystemClock:
    """The system's clocks: wall time from the RTC/NTP, monotonic time from the kernel."""

    def now(self) -> datetime:
        """Aware UTC wall time (wrong if the RTC was reset and NTP has not answered yet)."""
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        """Kernel monotonic seconds."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Block for SECONDS."""
        time.sleep(max(0.0, seconds))

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Wait for EVENT up to TIMEOUT seconds; True if it was set."""
        return event.wait(max(0.0, timeout))


class SysfsBattery:
    """The first power supply of type "Battery" under ROOT; none means the device runs on mains."""

    def __init__(self, root: Path = Path("/sys/class/power_supply")) -> None:
        self.root = Path(root)

    def level(self) -> int | None:
        """Capacity in percent, or None without a battery (or with one that does not report capacity)."""
        supply = self._supply()
        if supply is None:
            return None
        try:
            return max(0, min(100, int(_read(supply / "capacity"))))
        except (OSError, ValueError) as exc:
            log.warning("battery %s: cannot read capacity: %s", supply, exc)
            return None

    def charging(self) -> bool:
        """True when the battery reports status "Charging"."""
        supply = self._supply()
        if supply is None:
            return False
        try:
            return _read(supply / "status") == "Charging"
        except OSError as exc:
            log.warning("battery %s: cannot read status: %s", supply, exc)
            return False

    def _supply(self) -> Path | None:
        """The battery's sysfs directory, looked up on every call since a battery may be plugged in later."""
        if not self.root.is_dir():
            return None
        for supply in sorted(self.root.iterdir()):
            try:
                if _read(supply / "type") == "Battery":
                    return supply
            except OSError:
                continue  # a supply without a readable type is not a battery we can use
        return None


class FsStorage:
    """The real filesystem holding the media directory."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def total_bytes(self) -> int:
        """Size of the filesystem holding the media directory."""
        return shutil.disk_usage(self._existing()).total

    def free_bytes(self) -> int:
        """Bytes free on that filesystem."""
        return shutil.disk_usage(self._existing()).free

    def _existing(self) -> Path:
        """The media directory, or its nearest existing parent before the first download creates it."""
        path = self.path.absolute()
        while not path.exists() and path != path.parent:
            path = path.parent
        return path


class NoKeys:
    """A device without buttons we can read."""

    def poll(self) -> list[str]:
        """Never any key."""
        return []


class EvdevKeys:
    """Media keys read from a Linux input device with python-evdev."""

    CODES = {"KEY_PLAYPAUSE": "play_pause", "KEY_NEXTSONG": "next", "KEY_PREVIOUSSONG": "previous",
             "KEY_VOLUMEUP": "volume_up", "KEY_VOLUMEDOWN": "volume_down", "KEY_MENU": "menu"}

    def __init__(self, device: str | Path | None = None) -> None:
        evdev = _import_evdev("EvdevKeys")
        self._ecodes = evdev.ecodes
        wanted = {evdev.ecodes.ecodes[name]: key for name, key in self.CODES.items()}
        self._keys = wanted
        if device is not None:
            self._device = evdev.InputDevice(str(device))
            return
        for candidate in evdev.list_devices():
            dev = evdev.InputDevice(candidate)
            if set(dev.capabilities().get(evdev.ecodes.EV_KEY, ())) & wanted.keys():
                self._device = dev
                return
            dev.close()
        raise HardwareMissing("EvdevKeys: no input device has media keys; check the keypad is connected "
                              "and the agent's user is in the 'input' group")

    def poll(self) -> list[str]:
        """Media keys pressed down since the last poll."""
        pressed = []
        try:
            for event in self._device.read():
                if event.type == self._ecodes.EV_KEY and event.value == 1 and event.code in self._keys:
                    pressed.append(self._keys[event.code])
        except BlockingIOError:
            pass  # nothing queued since the last poll
        return pressed


class ConsoleDisplay:
    """A device without a screen: the status line goes to the log."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or log
        self._last = ""

    def show(self, text: str) -> None:
        """Log TEXT as the status line."""
        self._last = text
        self._log.info("display: %s", text)

    @property
    def last(self) -> str:
        """The text shown last."""
        return self._last


class NoCheckin:
    """A terminal without a card or QR reader."""

    def poll(self) -> list[tuple[str, str]]:
        """Never any reading."""
        return []


class HidCheckin:
    """A keyboard-wedge card or QR reader: it "types" the credential and presses Enter."""

    def __init__(self, device: str | Path, method: str = "card") -> None:
        evdev = _import_evdev("HidCheckin")
        self._ecodes = evdev.ecodes
        self._device = evdev.InputDevice(str(device))
        self._device.grab()  # keep the typed credential out of the console and any other reader
        self._decoder = WedgeDecoder(method)

    def poll(self) -> list[tuple[str, str]]:
        """Credentials completed (Enter pressed) since the last poll."""
        readings = []
        try:
            for event in self._device.read():
                if event.type == self._ecodes.EV_KEY:
                    name = self._ecodes.KEY.get(event.code, "")
                    line = self._decoder.feed(name if isinstance(name, str) else name[0], event.value)
                    if line is not None:
                        readings.append(line)
        except BlockingIOError:
            pass  # nothing typed since the last poll
        return readings


class WedgeDecoder:
    """Turns key events of a keyboard-wedge reader into (method, credential) lines."""

    _SHIFTED = {"1": "!", "2": "@", "3": "#", "4": "$", "5": "%", "6": "^", "7": "&", "8": "*", "9": "(",
                "0": ")", "MINUS": "_", "EQUAL": "+", "SLASH": "?", "DOT": ">", "COMMA": "<", "SEMICOLON": ":"}
    _PLAIN = {"MINUS": "-", "EQUAL": "=", "SLASH": "/", "DOT": ".", "COMMA": ",", "SEMICOLON": ";", "SPACE": " "}

    def __init__(self, method: str) -> None:
        self.method = method
        self._chars: list[str] = []
        self._shift = False

    def feed(self, name: str, value: int) -> tuple[str, str] | None:
        """Take one key event (evdev name like "KEY_A", value 1 down / 0 up); return a reading on Enter."""
        key = name.removeprefix("KEY_")
        if key in ("LEFTSHIFT", "RIGHTSHIFT"):
            self._shift = value != 0
            return None
        if value != 1:
            return None
        if key in ("ENTER", "KPENTER"):
            text, self._chars = "".join(self._chars), []
            return (self.method, text) if text else None
        char = self._char(key)
        if char:
            self._chars.append(char)
        return None

    def _char(self, key: str) -> str:
        """The character KEY types with the current shift state ("" for keys that type nothing)."""
        if len(key) == 1 and key.isalpha():
            return key if self._shift else key.lower()
        if self._shift and key in self._SHIFTED:
            return self._SHIFTED[key]
        if len(key) == 1 and key.isdigit():
            return key
        return self._PLAIN.get(key, "")


def linux_hardware(kind: str, media_dir: Path, *, firmware: str = "",
                   checkin_device: Path | None = None) -> Hardware:
    """The hardware of this Linux device: whatever keys, battery and reader it has, and a process audio player."""
    if kind not in DEVICE_KINDS:
        raise ValueError(f"device kind {kind!r} is not one of {', '.join(DEVICE_KINDS)}")
    try:
        keys = EvdevKeys()
    except HardwareMissing as exc:
        log.info("no media keys (%s); the device is controlled remotely only", exc)
        keys = NoKeys()
    checkin = None
    if kind == "terminal":
        checkin = HidCheckin(checkin_device) if checkin_device is not None else NoCheckin()
    return Hardware(clock=SystemClock(), audio=ProcessAudio(), keys=keys, battery=SysfsBattery(),
                    storage=FsStorage(Path(media_dir)), display=ConsoleDisplay(), checkin=checkin, kind=kind,
                    firmware=firmware or f"linux {platform.release()}")


def _import_evdev(who: str):
    """The evdev module, or HardwareMissing saying how to install it."""
    try:
        return importlib.import_module("evdev")
    except ImportError as exc:
        raise HardwareMissing(f"{who} needs the evdev package: pip install evdev "
                              "(or apt install python3-evdev)") from exc


def _read(path: Path) -> str:
    """A sysfs attribute's text without the trailing newline."""
    return path.read_text(encoding="ascii", errors="replace").strip()
