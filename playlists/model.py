"""Programme and audience types: the plain data the server plans with and channels and manifests are built from.

Every type is a frozen dataclass that checks its own cheap invariants on construction, so a bad value fails where it
was made ("Slot.time: '7:00' is not HH:MM") rather than deep inside manifest building.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime

PROFILES = ("radio", "terminal-audio", "terminal-video")
DEVICE_KINDS = ("radio", "terminal")
SLOT_KINDS = ("broadcast", "class")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""A slot's days, Monday first; index i is ``date.weekday() == i``. Names, not numbers: 0 or 1 for Monday is a
guess a reader of the JSON should not have to make."""

# A shape check, not a registry lookup: devices must not need the IANA subtag registry to read a manifest.
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*")
_HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_UNSAFE_CHAR = re.compile(r"[\x00-\x1f\x7f\\]")  # a backslash or a control character


def is_language_tag(value: object) -> bool:
    """True when value has the shape of a BCP 47 tag ("cmn", "zh-Hans", "nan-TW")."""
    return isinstance(value, str) and _LANGUAGE_TAG.fullmatch(value) is not None


def is_hhmm(value: object) -> bool:
    """True when value is a 24-hour "HH:MM" time of day."""
    return isinstance(value, str) and _HHMM.fullmatch(value) is not None


def days_problem(value: object) -> str | None:
    """Why value is not a slot's days (a non-empty list of distinct WEEKDAYS names), or None when it is."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, frozenset, set)):
        return "is not a list of days such as [\"mon\", \"tue\"]"
    unknown = [d for d in value if d not in WEEKDAYS]
    if unknown:
        return f"names {unknown[0]!r}, which is not one of {', '.join(WEEKDAYS)}"
    if not value:
        return "is empty (a slot plays on at least one day; remove the slot instead)"
    if len(set(value)) != len(value):
        return "names a day twice"
    return None


def week_order(days: object) -> tuple[str, ...]:
    """Days (valid WEEKDAYS names) in week order, Monday first."""
    return tuple(d for d in WEEKDAYS if d in days)


def plays_on(days: tuple[str, ...], day: date) -> bool:
    """True when a slot with these days plays on the calendar day (its weekday, in the caller's local time)."""
    return WEEKDAYS[day.weekday()] in days


def is_sha256(value: object) -> bool:
    """True when value is 64 lowercase hex digits."""
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def media_path_problem(path: object) -> str | None:
    """Why path is not a safe relative path under "media/", or None when it is."""
    if not isinstance(path, str):
        return "is not a string"
    if path.startswith("/"):
        return "starts with '/' (paths are relative to the media base URL)"
    if _UNSAFE_CHAR.search(path):
        return "contains a backslash or a control character"
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "has an empty, '.' or '..' segment"
    if len(parts) < 2 or parts[0] != "media":
        return "is not under 'media/'"
    return None


def _is_int(value: object) -> bool:
    # bool is an int subclass; True must not pass for a length or a position.
    return isinstance(value, int) and not isinstance(value, bool)


def _require(ok: bool, where: str, value: object, why: str) -> None:
    if not ok:
        raise ValueError(f"{where}: {value!r} {why}")


@dataclass(frozen=True)
class Rendition:
    """One encoded file of a lesson for one device profile, addressed by its content."""

    profile: str
    path: str
    length: int
    sha256: str
    duration: float

    def __post_init__(self) -> None:
        _require(self.profile in PROFILES, "Rendition.profile", self.profile, f"is not one of {', '.join(PROFILES)}")
        problem = media_path_problem(self.path)
        _require(problem is None, "Rendition.path", self.path, problem or "")
        _require(_is_int(self.length) and self.length >= 0, "Rendition.length", self.length,
                 "is not a non-negative byte count")
        _require(is_sha256(self.sha256), "Rendition.sha256", self.sha256, "is not 64 lowercase hex digits")
        _require(isinstance(self.duration, (int, float)) and not isinstance(self.duration, bool)
                 and math.isfinite(self.duration) and self.duration >= 0,
                 "Rendition.duration", self.duration, "is not a non-negative number of seconds")


@dataclass(frozen=True)
class LessonVersion:
    """A lesson in one language, with its renditions (at most one per profile)."""

    lesson_id: int
    title: str
    language: str
    renditions: tuple[Rendition, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "renditions", tuple(self.renditions))
        _require(_is_int(self.lesson_id), "LessonVersion.lesson_id", self.lesson_id, "is not an integer")
        _require(isinstance(self.title, str) and self.title.strip() != "", "LessonVersion.title", self.title,
                 "is empty")
        _require(is_language_tag(self.language), "LessonVersion.language", self.language,
                 "is not a BCP 47 tag such as 'cmn' or 'zh-Hans'")
        profiles = [r.profile for r in self.renditions]
        dupes = sorted({p for p in profiles if profiles.count(p) > 1})
        _require(not dupes, "LessonVersion.renditions", dupes, "appear more than once (one rendition per profile)")

    def rendition(self, profile: str) -> Rendition | None:
        """The rendition for profile, or None when this version has none."""
        return next((r for r in self.renditions if r.profile == profile), None)


@dataclass(frozen=True)
class Item:
    """A lesson's place in a programme: its position, whether it is mandatory, its target groups and variants."""

    position: int
    lesson: LessonVersion
    mandatory: bool = True
    groups: frozenset[str] = frozenset()
    variants: tuple[LessonVersion, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", frozenset(self.groups))
        object.__setattr__(self, "variants", tuple(self.variants))
        _require(_is_int(self.position) and self.position >= 0, "Item.position", self.position,
                 "is not a non-negative integer")
        _require(isinstance(self.mandatory, bool), "Item.mandatory", self.mandatory, "is not true or false")
        bad = sorted(repr(g) for g in self.groups if not isinstance(g, str) or g == "")
        _require(not bad, "Item.groups", bad, "are not non-empty group keys")

    def versions(self) -> tuple[LessonVersion, ...]:
        """The main lesson followed by its language variants."""
        return (self.lesson, *self.variants)


@dataclass(frozen=True)
class Slot:
    """A time at which a terminal plays, on some days of the week: a loudspeaker broadcast or a class session.

    ``days`` defaults to every day, which is what a slot meant before it had days.
    """

    time: str
    kind: str = "broadcast"
    item_position: int | None = None
    days: tuple[str, ...] = WEEKDAYS

    def __post_init__(self) -> None:
        problem = days_problem(self.days)
        _require(problem is None, "Slot.days", self.days, problem or "")
        object.__setattr__(self, "days", week_order(self.days))
        _require(is_hhmm(self.time), "Slot.time", self.time, "is not a 24-hour HH:MM time")
        _require(self.kind in SLOT_KINDS, "Slot.kind", self.kind, f"is not one of {', '.join(SLOT_KINDS)}")
        _require(self.item_position is None or (_is_int(self.item_position) and self.item_position >= 0),
                 "Slot.item_position", self.item_position, "is neither None nor a non-negative integer")


@dataclass(frozen=True)
class Programme:
    """A period's plan (a quarter, a campaign): ordered items, an inclusive validity window and daily slots."""

    id: int
    code: str
    version: int
    title: str
    valid_from: date
    valid_until: date
    items: tuple[Item, ...]
    slots: tuple[Slot, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))
        object.__setattr__(self, "slots", tuple(self.slots))
        _require(_is_int(self.id), "Programme.id", self.id, "is not an integer")
        _require(isinstance(self.code, str) and self.code.strip() != "", "Programme.code", self.code, "is empty")
        _require(_is_int(self.version) and self.version >= 1, "Programme.version", self.version,
                 "is not a positive integer")
        _require(isinstance(self.title, str), "Programme.title", self.title, "is not a string")
        for name in ("valid_from", "valid_until"):
            value = getattr(self, name)
            # datetime is a date subclass; a time of day here would make "inclusive" ambiguous.
            _require(isinstance(value, date) and not isinstance(value, datetime), f"Programme.{name}", value,
                     "is not a date")
        _require(self.valid_from <= self.valid_until, "Programme.valid_until", self.valid_until,
                 f"is before valid_from {self.valid_from.isoformat()}")
        positions = [item.position for item in self.items]
        dupes = sorted({p for p in positions if positions.count(p) > 1})
        _require(not dupes, "Programme.items", dupes, "are positions used more than once")
        missing = sorted({s.item_position for s in self.slots
                          if s.item_position is not None and s.item_position not in positions})
        _require(not missing, "Programme.slots", missing, "name item positions the programme does not have")


@dataclass(frozen=True)
class Audience:
    """What decides a device's playlist: its kind, its language and the groups it belongs to."""

    kind: str
    language: str
    groups: frozenset[str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", frozenset(self.groups))
        _require(self.kind in DEVICE_KINDS, "Audience.kind", self.kind, f"is not one of {', '.join(DEVICE_KINDS)}")
        _require(is_language_tag(self.language), "Audience.language", self.language,
                 "is not a BCP 47 tag such as 'cmn' or 'zh-Hans'")
        bad = sorted(repr(g) for g in self.groups if not isinstance(g, str) or g == "")
        _require(not bad, "Audience.groups", bad, "are not non-empty group keys")
