"""Retained MQTT payloads the server publishes (device config, channel notify): one dataclass and codec each.

The dataclasses validate themselves, so the server cannot publish a config a device would refuse, and the decoders
refuse missing fields, wrong types and out-of-range values with a message naming the field. Fields they do not
know are ignored, so a newer server can add settings without breaking agents that have not been updated.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from playlists.manifest import canonical_json, format_utc, parse_utc
from playlists.model import is_hhmm, is_language_tag
from playlists.topics import is_valid_id

# Shape only: a device may lack tzdata, and an unknown zone is for the agent to report, not for the codec to guess.
_TIMEZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bad(where: str, value: Any, why: str) -> ValueError:
    return ValueError(f"{where}: {value!r} {why}")


def _url_ok(value: str) -> bool:
    if value == "":
        return True
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


@dataclass(frozen=True)
class DeviceConfig:
    """What the server tells one device: its channel, language, clock zone, volume, reporting and download limits."""

    device: str
    channel: str
    language: str
    timezone: str = "Asia/Shanghai"
    volume: int = 70
    report_interval: int = 300
    download_window: tuple[str, str] | None = ("00:00", "06:00")
    data_budget_mb: int | None = None
    repository_url: str = ""
    media_base_url: str = ""
    sequence_epoch: int = 1
    revoked: bool = False

    def __post_init__(self) -> None:
        if self.download_window is not None and isinstance(self.download_window, list):
            object.__setattr__(self, "download_window", tuple(self.download_window))
        for name in ("device", "channel"):
            if not is_valid_id(getattr(self, name)):
                raise _bad(f"config.{name}", getattr(self, name), "is not a valid id")
        if not is_language_tag(self.language):
            raise _bad("config.language", self.language, "is not a BCP 47 language tag")
        if not isinstance(self.timezone, str) or not _TIMEZONE.fullmatch(self.timezone):
            raise _bad("config.timezone", self.timezone, "is not a time zone name like Asia/Shanghai")
        if not _is_int(self.volume) or not 0 <= self.volume <= 100:
            raise _bad("config.volume", self.volume, "is not an integer from 0 to 100")
        if not _is_int(self.report_interval) or self.report_interval < 1:
            raise _bad("config.report_interval", self.report_interval, "is not a positive number of seconds")
        window = self.download_window
        if window is not None and not (isinstance(window, tuple) and len(window) == 2
                                       and all(is_hhmm(t) for t in window) and window[0] != window[1]):
            raise _bad("config.download_window", window,
                       "is not two different HH:MM times (use null for no window)")
        if self.data_budget_mb is not None and (not _is_int(self.data_budget_mb) or self.data_budget_mb < 0):
            raise _bad("config.data_budget_mb", self.data_budget_mb, "is neither null nor a non-negative integer")
        for name in ("repository_url", "media_base_url"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _url_ok(value):
                raise _bad(f"config.{name}", value, "is neither empty nor an http(s) URL")
        if not _is_int(self.sequence_epoch) or self.sequence_epoch < 1:
            raise _bad("config.sequence_epoch", self.sequence_epoch, "is not a positive integer")
        if not isinstance(self.revoked, bool):
            raise _bad("config.revoked", self.revoked, "is not true or false")


@dataclass(frozen=True)
class Notify:
    """A channel's "refresh now": the manifest and TUF timestamp versions the server has just published."""

    channel: str
    manifest_version: int
    timestamp_version: int
    issued_at: datetime
    # "Download now": devices fetch this manifest at once, outside their download window (an urgent programme).
    urgent: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.urgent, bool):
            raise _bad("notify.urgent", self.urgent, "is not true or false")
        if not is_valid_id(self.channel):
            raise _bad("notify.channel", self.channel, "is not a valid channel id")
        for name in ("manifest_version", "timestamp_version"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise _bad(f"notify.{name}", value, "is not a positive integer")
        if not isinstance(self.issued_at, datetime) or self.issued_at.utcoffset() is None:
            raise _bad("notify.issued_at", self.issued_at, "is not an aware datetime")


def encode(obj: DeviceConfig | Notify) -> bytes:
    """The canonical JSON bytes of a payload."""
    if isinstance(obj, DeviceConfig):
        data = {f.name: getattr(obj, f.name) for f in fields(obj)}
        if obj.download_window is not None:
            data["download_window"] = list(obj.download_window)
        return canonical_json(data)
    if isinstance(obj, Notify):
        data = {"channel": obj.channel, "manifest_version": obj.manifest_version,
                "timestamp_version": obj.timestamp_version, "issued_at": format_utc(obj.issued_at)}
        if obj.urgent:  # only when set: the notify of an ordinary publish stays what older agents know
            data["urgent"] = True
        return canonical_json(data)
    raise TypeError(f"encode: {type(obj).__name__} is not a lessoncast payload")


def _object(data: bytes, what: str, required: tuple[str, ...], allowed: tuple[str, ...]) -> dict:
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError(f"{what}: {type(data).__name__} given, bytes expected")
    try:
        raw = json.loads(bytes(data).decode("utf-8"), parse_constant=lambda name: _reject(what, name),
                         object_pairs_hook=lambda pairs: _unique(what, pairs))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{what}: not UTF-8 JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{what}: {type(raw).__name__} given, a JSON object expected")
    missing = [k for k in required if k not in raw]
    if missing:
        raise ValueError(f"{what}.{missing[0]}: missing")
    # Fields this version does not know are dropped, not refused: a newer server may add settings, and an
    # agent that has not been updated yet must keep working with the ones it knows.
    return {k: v for k, v in raw.items() if k in allowed}


def _unique(what: str, pairs: list[tuple[str, Any]]) -> dict:
    if len({k for k, _ in pairs}) != len(pairs):
        dupes = sorted({k for k, _ in pairs if [p[0] for p in pairs].count(k) > 1})
        raise ValueError(f"{what}.{dupes[0]}: appears twice in one object")
    return dict(pairs)


def _reject(what: str, name: str) -> Any:
    raise ValueError(f"{what}: {name} is not a JSON number")


def decode_config(data: bytes) -> DeviceConfig:
    """The DeviceConfig in data; fields left out take their defaults, fields from newer servers are ignored."""
    names = tuple(f.name for f in fields(DeviceConfig))
    raw = _object(data, "config", ("device", "channel", "language"), names)
    window = raw.get("download_window", DeviceConfig.download_window)
    if window is not None:
        if not isinstance(window, (list, tuple)):
            raise _bad("config.download_window", window, "is neither null nor a [start, end] pair")
        raw["download_window"] = tuple(window)
    return DeviceConfig(**raw)


def decode_notify(data: bytes) -> Notify:
    """The Notify in data."""
    keys = ("channel", "manifest_version", "timestamp_version", "issued_at")
    raw = _object(data, "notify", keys, keys + ("urgent",))
    try:
        issued_at = parse_utc(raw["issued_at"])
    except ValueError:
        raise _bad("notify.issued_at", raw["issued_at"], "is not a UTC time like 2026-11-22T03:00:00Z") from None
    return Notify(channel=raw["channel"], manifest_version=raw["manifest_version"],
                  timestamp_version=raw["timestamp_version"], issued_at=issued_at, urgent=raw.get("urgent", False))
