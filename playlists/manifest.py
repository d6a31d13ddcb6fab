"""The channel manifest: built by the server as canonical JSON, parsed strictly by devices, diffed between versions.

A device parses manifest bytes before it has checked them against the TUF target info, and a sideload pack comes off
a USB stick, so ``parse_manifest`` trusts nothing: every field is checked for type, shape and range, and paths must
stay under ``media/``.

Two schemas are in use. Schema 1 has no slot days: every slot plays every day. Schema 2 adds ``days`` to every slot.
``build_manifest`` writes schema 1 whenever every slot of the channel plays every day, so a channel whose slots have
no day restriction gets the same bytes an agent that only knows schema 1 has always accepted; only a channel with a
day-restricted slot gets schema 2, which such an agent refuses as a whole (it keeps playing its last manifest and
reports the refusal) rather than playing a Monday-to-Friday slot on Saturday. docs/PROTOCOL.md §7 has the rule.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from playlists.channels import playlist_for
from playlists.model import (
    DEVICE_KINDS,
    PROFILES,
    SLOT_KINDS,
    WEEKDAYS,
    Audience,
    Programme,
    is_hhmm,
    is_language_tag,
    is_sha256,
    days_problem,
    media_path_problem,
    week_order,
)
from playlists.topics import is_valid_id

SCHEMA = 1
"""The schema of a manifest whose slots all play every day (and of every manifest before slots had days)."""
SCHEMA_DAYS = 2
"""The schema of a manifest with at least one day-restricted slot: every slot carries ``days``."""
SCHEMAS = (SCHEMA, SCHEMA_DAYS)
FIRST_AGENT = {SCHEMA: (0, 1, 0), SCHEMA_DAYS: (0, 4, 0)}
"""The first agent version that reads each schema: an older agent refuses that schema's manifests."""


def reads_schema(agent_version: object, schema: int) -> bool | None:
    """Whether an agent reporting agent_version ("0.3.0") reads manifests of schema; None when the version is
    not a dotted number (unknown: the agent did not say)."""
    parts = agent_version.split(".") if isinstance(agent_version, str) else []
    if not parts or not all(p.isdigit() and len(p) < 6 for p in parts):
        return None
    return tuple(int(p) for p in parts) >= FIRST_AGENT[schema]

_UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_UTC_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_DATE_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}")


class ManifestError(ValueError):
    """A manifest that is malformed; the message names the field and the bad value."""


@dataclass(frozen=True)
class ManifestProgramme:
    """A programme as a manifest lists it."""

    id: int
    code: str
    version: int
    title: str
    valid_from: date
    valid_until: date
    grace_days: int


@dataclass(frozen=True)
class ManifestItem:
    """One lesson file a manifest lists, with where it sits in its programme."""

    programme: str
    position: int
    lesson: int
    title: str
    language: str
    mandatory: bool
    profile: str
    path: str
    length: int
    sha256: str
    duration: float
    valid_from: date
    valid_until: date


@dataclass(frozen=True)
class ManifestSlot:
    """A daily terminal slot as a manifest lists it."""

    programme: str
    time: str
    kind: str
    item_position: int | None
    days: tuple[str, ...] = WEEKDAYS


@dataclass(frozen=True)
class Manifest:
    """A parsed, validated channel manifest."""

    schema: int
    channel: str
    version: int
    issued_at: datetime
    kind: str
    language: str
    programmes: tuple[ManifestProgramme, ...]
    items: tuple[ManifestItem, ...]
    slots: tuple[ManifestSlot, ...]


@dataclass(frozen=True)
class ManifestDiff:
    """What changed between two manifests, and how many bytes a device must fetch to catch up."""

    added: tuple[ManifestItem, ...]
    removed: tuple[ManifestItem, ...]
    download_bytes: int


def canonical_json(obj: Any) -> bytes:
    """The one byte form of obj: sorted keys, no spaces, UTF-8, no NaN, dates as ISO strings, no trailing newline."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      default=_json_default).encode("utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def format_utc(moment: datetime) -> str:
    """An aware datetime as "YYYY-MM-DDTHH:MM:SSZ" in UTC; naive datetimes are refused."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"issued_at: {moment.isoformat()} has no time zone (pass an aware UTC datetime)")
    return moment.astimezone(timezone.utc).strftime(_UTC_FORMAT)


def parse_utc(text: str) -> datetime:
    """The aware UTC datetime of a "YYYY-MM-DDTHH:MM:SSZ" string."""
    if not isinstance(text, str) or not _UTC_SHAPE.fullmatch(text):
        raise ValueError(f"{text!r} is not a UTC time like 2026-11-22T03:00:00Z")
    return datetime.strptime(text, _UTC_FORMAT).replace(tzinfo=timezone.utc)


def build_manifest(*, channel: str, audience: Audience, version: int, issued_at: datetime,
                   programmes: Iterable[Programme], today: date, grace_days: int) -> dict:
    """The manifest dict of a channel: its held programmes, the audience's items and, for terminals, slots."""
    if not is_valid_id(channel):
        raise ValueError(f"channel: {channel!r} is not a valid channel id")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version: {version!r} is not a positive integer")
    programmes = tuple(programmes)
    codes = [p.code for p in programmes]
    dupes = sorted({c for c in codes if codes.count(c) > 1})
    if dupes:
        raise ValueError(f"programmes: codes {dupes} are used by more than one programme")
    playlist = playlist_for(programmes, audience, today=today, grace_days=grace_days)
    listed = {(e.programme_code, e.position) for e in playlist.entries}
    # A programme none of whose items reach this audience is left out, and its slots with it.
    with_items = {code for code, _ in listed}
    held = sorted((p for p in programmes if p.code in with_items), key=lambda p: (p.valid_from, p.id))
    slots = [] if audience.kind != "terminal" else _slots(held, listed)
    restricted = any(s["days"] != list(WEEKDAYS) for s in slots)
    if not restricted:
        # Schema 1 bytes, exactly as before slots had days: agents that only know schema 1 keep accepting them.
        for s in slots:
            del s["days"]
    return {
        "schema": SCHEMA_DAYS if restricted else SCHEMA,
        "channel": channel,
        "version": version,
        "issued_at": format_utc(issued_at),
        "kind": audience.kind,
        "language": audience.language,
        "programmes": [{"id": p.id, "code": p.code, "version": p.version, "title": p.title,
                        "valid_from": p.valid_from.isoformat(), "valid_until": p.valid_until.isoformat(),
                        "grace_days": grace_days} for p in held],
        "items": [{"programme": e.programme_code, "position": e.position, "lesson": e.lesson_id, "title": e.title,
                   "language": e.language, "mandatory": e.mandatory, "profile": e.rendition.profile,
                   "path": e.rendition.path, "length": e.rendition.length, "sha256": e.rendition.sha256,
                   "duration": float(e.rendition.duration), "valid_from": e.valid_from.isoformat(),
                   "valid_until": e.valid_until.isoformat()} for e in playlist.entries],
        "slots": slots,
    }


def _slots(held: list[Programme], listed: set[tuple[str, int]]) -> list[dict]:
    slots = []
    for p in held:
        # A slot pinned to an item this channel does not get would point a terminal at nothing; leave it out.
        kept = [s for s in p.slots if s.item_position is None or (p.code, s.item_position) in listed]
        for s in sorted(kept, key=lambda s: (s.time, s.kind, -1 if s.item_position is None else s.item_position)):
            slots.append({"programme": p.code, "time": s.time, "kind": s.kind, "item_position": s.item_position,
                          "days": list(s.days)})
    return slots


# ---- parsing -------------------------------------------------------------------------------------------------------

_TOP = ("schema", "channel", "version", "issued_at", "kind", "language", "programmes", "items", "slots")
_PROGRAMME = ("id", "code", "version", "title", "valid_from", "valid_until", "grace_days")
_ITEM = ("programme", "position", "lesson", "title", "language", "mandatory", "profile", "path", "length", "sha256",
         "duration", "valid_from", "valid_until")
_SLOT = ("programme", "time", "kind", "item_position")
_SLOT_FIELDS = {SCHEMA: _SLOT, SCHEMA_DAYS: (*_SLOT, "days")}


def _fail(where: str, value: Any, why: str) -> ManifestError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return ManifestError(f"{where}: {shown} {why}")


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            # Two parsers could disagree on which of two equal keys wins; refuse rather than guess.
            raise ManifestError(f"{key}: appears twice in one object")
        seen[key] = value
    return seen


def _reject_constant(name: str) -> Any:
    raise ManifestError(f"manifest: {name} is not a JSON number")


def _fields(obj: Any, where: str, keys: tuple[str, ...], schema: int) -> dict:
    if not isinstance(obj, dict):
        raise _fail(where, type(obj).__name__, "is not an object")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise ManifestError(f"{where}.{missing[0]}: missing")
    extra = sorted(set(obj) - set(keys))
    if extra:
        raise ManifestError(f"{where}.{extra[0]}: is not a field of schema {schema}")
    return obj


def _int(value: Any, where: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, value, "is not an integer")
    if minimum is not None and value < minimum:
        raise _fail(where, value, f"is below {minimum}")
    return value


def _str(value: Any, where: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and value.strip() == ""):
        raise _fail(where, value, "is not a non-empty string")
    return value


def _date(value: Any, where: str) -> date:
    if not isinstance(value, str) or not _DATE_SHAPE.fullmatch(value):
        raise _fail(where, value, "is not a date like 2026-10-01")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _fail(where, value, "is not a calendar date") from None


def _language(value: Any, where: str) -> str:
    if not is_language_tag(value):
        raise _fail(where, value, "is not a BCP 47 language tag")
    return value


def _window(obj: dict, where: str) -> tuple[date, date]:
    start, end = _date(obj["valid_from"], f"{where}.valid_from"), _date(obj["valid_until"], f"{where}.valid_until")
    if end < start:
        raise _fail(f"{where}.valid_until", obj["valid_until"], f"is before valid_from {obj['valid_from']}")
    return start, end


def _programme(obj: Any, where: str, schema: int) -> ManifestProgramme:
    obj = _fields(obj, where, _PROGRAMME, schema)
    start, end = _window(obj, where)
    return ManifestProgramme(
        id=_int(obj["id"], f"{where}.id"), code=_str(obj["code"], f"{where}.code"),
        version=_int(obj["version"], f"{where}.version", 1), title=_str(obj["title"], f"{where}.title", empty=True),
        valid_from=start, valid_until=end, grace_days=_int(obj["grace_days"], f"{where}.grace_days", 0))


def _item(obj: Any, where: str, kind: str, schema: int) -> ManifestItem:
    obj = _fields(obj, where, _ITEM, schema)
    profile = obj["profile"]
    if profile not in PROFILES or (profile == "radio") != (kind == "radio"):
        raise _fail(f"{where}.profile", profile, f"is not a profile a {kind} plays")
    problem = media_path_problem(obj["path"])
    if problem:
        raise _fail(f"{where}.path", obj["path"], problem)
    if not is_sha256(obj["sha256"]):
        raise _fail(f"{where}.sha256", obj["sha256"], "is not 64 lowercase hex digits")
    duration = obj["duration"]
    if (isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration)
            or duration < 0):
        raise _fail(f"{where}.duration", duration, "is not a non-negative number of seconds")
    if not isinstance(obj["mandatory"], bool):
        raise _fail(f"{where}.mandatory", obj["mandatory"], "is not true or false")
    start, end = _window(obj, where)
    return ManifestItem(
        programme=_str(obj["programme"], f"{where}.programme"), position=_int(obj["position"], f"{where}.position", 0),
        lesson=_int(obj["lesson"], f"{where}.lesson"), title=_str(obj["title"], f"{where}.title"),
        language=_language(obj["language"], f"{where}.language"), mandatory=obj["mandatory"], profile=profile,
        path=obj["path"], length=_int(obj["length"], f"{where}.length", 0), sha256=obj["sha256"],
        duration=float(duration), valid_from=start, valid_until=end)


def _slot(obj: Any, where: str, schema: int) -> ManifestSlot:
    obj = _fields(obj, where, _SLOT_FIELDS[schema], schema)
    if not is_hhmm(obj["time"]):
        raise _fail(f"{where}.time", obj["time"], "is not a 24-hour HH:MM time")
    if obj["kind"] not in SLOT_KINDS:
        raise _fail(f"{where}.kind", obj["kind"], f"is not one of {', '.join(SLOT_KINDS)}")
    position = obj["item_position"]
    if position is not None:
        _int(position, f"{where}.item_position", 0)
    days = WEEKDAYS  # schema 1: every slot plays every day
    if schema == SCHEMA_DAYS:
        problem = days_problem(obj["days"]) if isinstance(obj["days"], list) else "is not a list"
        if problem:
            raise _fail(f"{where}.days", obj["days"], problem)
        if list(week_order(obj["days"])) != obj["days"]:
            raise _fail(f"{where}.days", obj["days"], "is not in week order (mon first)")
        days = tuple(obj["days"])
    return ManifestSlot(programme=_str(obj["programme"], f"{where}.programme"), time=obj["time"], kind=obj["kind"],
                        item_position=position, days=days)


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise _fail(where, type(value).__name__, "is not a list")
    return value


def parse_manifest(data: bytes) -> Manifest:
    """The validated Manifest in data; raises ManifestError naming the first malformed field."""
    if not isinstance(data, (bytes, bytearray)):
        raise ManifestError(f"manifest: {type(data).__name__} given, bytes expected")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"manifest: not UTF-8 at byte {exc.start}") from None
    try:
        raw = json.loads(text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant)
    except ManifestError:
        raise
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ManifestError(f"manifest: not JSON ({exc})") from None
    schema = SCHEMA
    if isinstance(raw, dict) and "schema" in raw:
        # Checked before the field list: another schema may well have other fields.
        schema = raw["schema"]
        if isinstance(schema, bool) or not isinstance(schema, int) or schema not in SCHEMAS:
            raise _fail("schema", schema, f"is not schema {' or '.join(map(str, SCHEMAS))} "
                                          "(a newer server? update the agent)")
    top = _fields(raw, "manifest", _TOP, schema)
    if not is_valid_id(top["channel"]):
        raise _fail("channel", top["channel"], "is not a valid channel id")
    kind = top["kind"]
    if kind not in DEVICE_KINDS:
        raise _fail("kind", kind, f"is not one of {', '.join(DEVICE_KINDS)}")
    try:
        issued_at = parse_utc(top["issued_at"])
    except ValueError:
        raise _fail("issued_at", top["issued_at"], "is not a UTC time like 2026-11-22T03:00:00Z") from None

    programmes = tuple(_programme(p, f"programmes[{i}]", schema)
                       for i, p in enumerate(_list(top["programmes"], "programmes")))
    by_code: dict[str, ManifestProgramme] = {}
    for i, p in enumerate(programmes):
        if p.code in by_code:
            raise _fail(f"programmes[{i}].code", p.code, "is listed twice")
        by_code[p.code] = p

    items = tuple(_item(it, f"items[{i}]", kind, schema) for i, it in enumerate(_list(top["items"], "items")))
    seen: set[tuple[str, int]] = set()
    lengths: dict[str, int] = {}
    for i, it in enumerate(items):
        if it.programme not in by_code:
            raise _fail(f"items[{i}].programme", it.programme, "is not a listed programme")
        if (it.programme, it.position) in seen:
            raise _fail(f"items[{i}].position", it.position, f"is used twice in programme {it.programme!r}")
        seen.add((it.programme, it.position))
        if lengths.setdefault(it.sha256, it.length) != it.length:
            raise _fail(f"items[{i}].length", it.length,
                        f"differs from the {lengths[it.sha256]} bytes listed for the same sha256")

    slots = tuple(_slot(s, f"slots[{i}]", schema) for i, s in enumerate(_list(top["slots"], "slots")))
    if slots and kind != "terminal":
        raise _fail("slots", len(slots), "slots are listed for a radio (only terminals have slots)")
    for i, s in enumerate(slots):
        if s.programme not in by_code:
            raise _fail(f"slots[{i}].programme", s.programme, "is not a listed programme")
        if s.item_position is not None and (s.programme, s.item_position) not in seen:
            raise _fail(f"slots[{i}].item_position", s.item_position, f"is not an item of {s.programme!r}")

    return Manifest(schema=schema, channel=top["channel"], version=_int(top["version"], "version", 1),
                    issued_at=issued_at, kind=kind, language=_language(top["language"], "language"),
                    programmes=programmes, items=items, slots=slots)


# ---- comparing -----------------------------------------------------------------------------------------------------

def media_of(manifest: Manifest) -> dict[str, ManifestItem]:
    """The unique files of a manifest: sha256 to the first item that lists it."""
    files: dict[str, ManifestItem] = {}
    for item in manifest.items:
        files.setdefault(item.sha256, item)
    return files


def diff_manifests(old: Manifest | None, new: Manifest) -> ManifestDiff:
    """Items added and removed (by programme, position and sha256) and the bytes of files new to the device."""
    def key(item: ManifestItem) -> tuple[str, int, str]:
        return (item.programme, item.position, item.sha256)

    old_items = old.items if old is not None else ()
    old_keys = {key(i) for i in old_items}
    new_keys = {key(i) for i in new.items}
    old_files = {i.sha256 for i in old_items}
    return ManifestDiff(
        added=tuple(i for i in new.items if key(i) not in old_keys),
        removed=tuple(i for i in old_items if key(i) not in new_keys),
        download_bytes=sum(i.length for sha, i in media_of(new).items() if sha not in old_files))
