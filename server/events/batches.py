"""Event batches, parsed: what a device sends (an MQTT batch, or an events file on a USB stick), checked and turned
into the events to store, plus the acks' arithmetic. Pure: no database, no broker.

A batch's or a file's problem is a ValueError (EventFileError for a file) whose message names the field or the line,
so the caller can quarantine the batch or tell the operator what to do.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Optional

import orjson

from playlists import topics
from playlists.manifest import canonical_json
from server.attendance.rules import parse_instant

MAX_SEQ = 2**31 - 1  # the columns are 32-bit integers
_RANGE = re.compile(r"([0-9]{1,10})-([0-9]{1,10})")
_DECIMAL = re.compile(r"[0-9]{1,10}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class EventFileError(ValueError):
    """An events file that cannot be imported; the message names the file, the line and what to do."""


class Event(NamedTuple):
    """One event as it will be stored: its id, sequence range, type, device clock and every field it came with."""

    event_id: str
    seq: int
    seq_last: int
    type: str
    device_time: Optional[datetime]
    body: dict[str, Any]
    text: Optional[str] = None  # the event's JSON exactly as the device sent it, when it came in a batch


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_text(value: str) -> bool:
    """Whether VALUE can be stored as text: a JSON escape such as \\ud800 decodes to a lone surrogate, which cannot."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def strict_json(data: bytes, what: str) -> Any:
    """The JSON value in DATA; duplicate keys, NaN and Infinity are refused (ValueError naming WHAT)."""

    def unique(pairs: list[tuple[str, Any]]) -> dict:
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{what}: key {sorted(k for k in keys if keys.count(k) > 1)[0]!r} appears twice")
        return dict(pairs)

    def constant(name: str) -> Any:
        raise ValueError(f"{what}: {name} is not a JSON number")

    try:
        return json.loads(bytes(data).decode("utf-8"), object_pairs_hook=unique, parse_constant=constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{what}: not UTF-8 JSON ({exc})") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"batch: {name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if value - value:  # inf - inf is nan, which is true; every finite value gives 0.0
        raise ValueError(f"batch: {text} is too large for a number")
    return value


# Every JSON number with a fraction or an exponent goes through _finite: one that is too large for a float (1e999,
# or 400 digits before the point) is refused rather than read as infinity. Choosing a faster decoder by looking for
# big exponents first cost more (a regular expression over the whole payload: 2 ms a batch of 200) than checking.
_DECODE = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite).raw_decode
_SPACE = re.compile(r"[ \t\n\r]*").match
_NEXT = re.compile(r"[ \t\n\r]*([,\]])[ \t\n\r]*").match  # after an event: the comma or the array's end


# What the agent sends: json.dumps of {"device", "epoch", "events"} in that order, without spaces.
_AGENT_BATCH = re.compile(rb'\{"device":"(' + topics.ID_PATTERN.encode()
                          + rb')","epoch":(0|[1-9][0-9]{0,9}),"events":\[')


def _split_agent_batch(payload: bytes) -> Optional[tuple[dict[str, Any], list[tuple[Any, str]]]]:
    """``split_batch``'s answer for a batch exactly as the agent writes it, or None for anything else.

    orjson decodes a batch in under half the time of the strict decoder (bench/decode.py), but it cannot say where
    each event's text is, and it differs on what strict decoding refuses (it keeps the last of duplicate keys, and
    reads an integer beyond 64 bits as a float). So the events are encoded again, and only when that gives back the
    payload byte for byte is the answer taken: then every value is what the text says, each event's text is exactly
    the device's, and the top level holds the three keys once each. Anything else (another sender's spacing or
    number format, say) goes through the strict decoder."""
    if type(payload) is not bytes:
        return None
    top = _AGENT_BATCH.match(payload)
    if top is None or not payload.endswith(b"]}"):
        return None
    body = payload[top.end() - 1:-1]  # the events' array
    try:
        events = orjson.loads(body)
        if type(events) is not list or not events or orjson.dumps(events) != body:
            return None
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):  # orjson nests 255 deep, the standard library more
        return None
    # Encoded without spaces, objects are separated by "},{", which inside an event only a list of objects or a
    # string holds: then there are more pieces than events, and each event is encoded on its own to find its text.
    pieces = body[2:-2].decode("utf-8").split("},{")
    if len(pieces) == len(events) and all(type(event) is dict for event in events):
        texts = ["{" + piece + "}" for piece in pieces]
    else:
        texts = [orjson.dumps(event).decode("utf-8") for event in events]
    return {"device": top[1].decode("ascii"), "epoch": int(top[2]), "events": events}, list(zip(events, texts))


def split_batch(payload: bytes) -> tuple[dict[str, Any], Optional[list[tuple[Any, str]]]]:
    """A batch's top-level object, and its "events" as (value, the JSON text it was read from) pairs.

    Each event keeps the exact text the device sent: it is stored as is, without encoding it again. A batch as the
    agent writes it is decoded with orjson (``_split_agent_batch``); any other is decoded strictly, event by event,
    with the standard library's decoder. Duplicate top-level keys, NaN and Infinity are refused; anything else
    wrong is a ValueError saying where.
    """
    fast = _split_agent_batch(payload)
    if fast is not None:
        return fast
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"batch: not UTF-8 JSON ({exc})") from None
    top: dict[str, Any] = {}
    events: Optional[list[tuple[Any, str]]] = None
    decode = _DECODE

    def expect(i: int, chars: str) -> str:
        c = text[i:i + 1]
        if not c or c not in chars:
            raise ValueError(f"batch: not JSON: {' or '.join(repr(x) for x in chars)} expected at character {i}")
        return c

    try:
        i = _SPACE(text, 0).end()
        expect(i, "{")
        i = _SPACE(text, i + 1).end()
        if text[i:i + 1] == "}":
            i += 1
        else:
            while True:
                expect(i, '"')
                key, i = decode(text, i)
                i = _SPACE(text, i).end()
                expect(i, ":")
                i = _SPACE(text, i + 1).end()
                if key in top:
                    raise ValueError(f"batch: key {key!r} appears twice")
                if key == "events" and text[i:i + 1] == "[":
                    events, i = [], _SPACE(text, i + 1).end()
                    if text[i:i + 1] == "]":
                        i += 1
                    else:
                        append, after = events.append, _NEXT
                        while True:  # the loop a batch's 200 events go through: kept to the fewest steps
                            start = i
                            value, i = decode(text, i)
                            append((value, text[start:i]))
                            found = after(text, i)
                            if found is None:
                                expect(_SPACE(text, i).end(), ",]")
                            i = found.end()
                            if found[1] == "]":
                                break
                    top[key] = [v for v, _t in events]
                else:
                    top[key], i = decode(text, i)
                i = _SPACE(text, i).end()
                if expect(i, ",}") == "}":
                    i += 1
                    break
                i = _SPACE(text, i + 1).end()
        if _SPACE(text, i).end() != len(text):
            raise ValueError(f"batch: not JSON: extra data at character {i}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"batch: not JSON ({exc})") from None
    except RecursionError:
        raise ValueError("batch: not JSON (nested too deeply)") from None
    except ValueError as exc:  # the decoder's own, such as an integer too long to convert: still the batch's fault
        if str(exc).startswith("batch"):
            raise
        raise ValueError(f"batch: not JSON ({exc})") from None
    return top, events


def parse_event(raw: object, where: str, text: Optional[str] = None) -> Event:
    """The Event in RAW, or ValueError naming the field; every field RAW holds is kept as the body (and TEXT, the
    JSON it was read from, is kept to be stored as it came)."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: {type(raw).__name__} given, a JSON object expected")
    event_id = raw.get("id")
    if isinstance(event_id, str) and _UUID.fullmatch(event_id):
        event_id = event_id.lower()
    else:
        try:  # the other spellings of a UUID (no hyphens, braces, urn:uuid:), in their canonical form
            event_id = str(uuid.UUID(event_id)) if isinstance(event_id, str) else None
        except ValueError:
            event_id = None
    if event_id is None:
        raise ValueError(f"{where}.id: {raw.get('id')!r} is not a UUID")
    seq = raw.get("seq")
    if type(seq) is not int or not 1 <= seq <= MAX_SEQ:  # type(), not isinstance: true is not a number here
        raise ValueError(f"{where}.seq: {seq!r} is not an integer from 1 to {MAX_SEQ}")
    seq_last = raw.get("seq_last", seq)
    if type(seq_last) is not int or not seq <= seq_last <= MAX_SEQ:
        raise ValueError(f"{where}.seq_last: {seq_last!r} is not an integer from seq ({seq}) to {MAX_SEQ}")
    kind = raw.get("type")
    if type(kind) is not str or not 1 <= len(kind) <= 32 or not (kind.isascii() or _is_text(kind)):
        raise ValueError(f"{where}.type: {kind!r} is not a type name of 1 to 32 characters")
    return Event(event_id, seq, seq_last, kind, parse_instant(raw.get("device_time")), raw, text)


def batch_range(properties: Mapping[str, str]) -> tuple[int, int, int]:
    """(epoch, first seq, last seq) from a batch's MQTT user properties, or ValueError saying what is missing."""
    epoch, seq = properties.get("epoch"), properties.get("seq")
    if not isinstance(epoch, str) or not _DECIMAL.fullmatch(epoch) or not 1 <= int(epoch) <= MAX_SEQ:
        raise ValueError(f"user property epoch: {epoch!r} is not a decimal integer >= 1")
    match = _RANGE.fullmatch(seq) if isinstance(seq, str) else None
    if match is None or not 1 <= int(match[1]) <= int(match[2]) <= MAX_SEQ:
        raise ValueError(f"user property seq: {seq!r} is not a range '<first>-<last>' with 1 <= first <= last")
    return int(epoch), int(match[1]), int(match[2])


def parse_batch(device: str, properties: Mapping[str, str], payload: bytes, epoch: int, first: int,
                last: int, max_event_bytes: Optional[int] = None) -> list[Event]:
    """The events of a batch from DEVICE, or ValueError saying why the batch must be quarantined (an event over
    MAX_EVENT_BYTES is one reason)."""
    if properties.get("device") != device:
        raise ValueError(f"user property device {properties.get('device')!r} is not the topic's device {device!r}")
    body, texts = split_batch(payload)
    if body.get("device") != device:
        raise ValueError(f"batch.device: {body.get('device')!r} is not the topic's device {device!r}")
    if body.get("epoch") != epoch or not _is_int(body.get("epoch")):
        raise ValueError(f"batch.epoch: {body.get('epoch')!r} is not the user property's epoch {epoch}")
    raw_events = body.get("events")
    if not isinstance(raw_events, list) or not raw_events:
        raise ValueError("batch.events: not a non-empty list")
    if max_event_bytes is not None:
        for n, (_raw, text) in enumerate(texts or []):
            # A character is at most 4 bytes in UTF-8: only a long text needs encoding to be measured.
            if len(text) * 4 > max_event_bytes and len(text.encode("utf-8")) > max_event_bytes:
                raise ValueError(f"batch.events[{n}]: {len(text.encode('utf-8')):,} bytes is over the "
                                 f"{max_event_bytes:,}-byte limit of an event (LESSONCAST_INGEST_MAX_EVENT_BYTES)")
    events = []
    append = events.append
    for n, (raw, text) in enumerate(texts or []):
        try:
            event = parse_event(raw, "", text)  # where it is only put into words for an event that is wrong
        except ValueError as exc:
            raise ValueError(f"batch.events[{n}]{exc}") from None
        append(event)
        if event.seq < first or event.seq_last > last:
            raise ValueError(f"batch.events[{n}]: seq {event.seq}-{event.seq_last} is outside the batch's "
                             f"range {first}-{last}")
        if "epoch" in event.body and event.body["epoch"] != epoch:
            raise ValueError(f"batch.events[{n}].epoch: {event.body['epoch']!r} is not the batch's epoch {epoch}")
    return events


def contiguous_end(acked: int, ranges: Iterable[tuple[int, int]]) -> int:
    """The highest n such that 1..n is covered, given that 1..ACKED is and the stored (first, last) RANGES."""
    for first, last in sorted(ranges):
        if first > acked + 1:
            break
        acked = max(acked, last)
    return acked


def ack_payload(epoch: int, seq: int) -> bytes:
    """The canonical JSON of an ack: {"epoch":E,"seq":N}."""
    return canonical_json({"epoch": epoch, "seq": seq})

@dataclass
class EventsFile:
    """A parsed events file: the device, the header's epoch and the events of each epoch."""

    device: str
    epoch: int
    raw: bytes
    by_epoch: dict[int, list[Event]] = field(default_factory=dict)


def read_events_file(path: Path) -> EventsFile:
    """Parse an events file (a header line, then one event per line), or raise EventFileError naming the line."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EventFileError(f"{path}: cannot read it ({exc.strerror})") from None
    numbered = [(n, line) for n, line in enumerate(raw.splitlines(), 1) if line.strip()]
    if not numbered:
        raise EventFileError(f"{path}: empty; a device's events file starts with a line "
                             '{"device": "<id>", "epoch": <n>}')
    try:
        header = strict_json(numbered[0][1], "header")
        if not isinstance(header, dict) or not topics.is_valid_id(header.get("device")):
            raise ValueError('not {"device": "<id>", "epoch": <n>} with a valid device id')
        if not _is_int(header.get("epoch")) or not 1 <= header["epoch"] <= MAX_SEQ:
            raise ValueError(f"epoch {header.get('epoch')!r} is not an integer >= 1")
    except ValueError as exc:
        raise EventFileError(f"{path}: line {numbered[0][0]}: bad header: {exc}") from None
    parsed = EventsFile(header["device"], header["epoch"], raw)
    for n, line in numbered[1:]:
        try:
            raw = strict_json(line, "event")
            event = parse_event(raw, "event")
            epoch = raw.get("epoch", parsed.epoch)
            if not _is_int(epoch) or not 1 <= epoch <= MAX_SEQ:
                raise ValueError(f"event.epoch: {epoch!r} is not an integer >= 1")
            if raw.get("device", parsed.device) != parsed.device:
                raise ValueError(f"event.device: {raw['device']!r} is not the header's device {parsed.device!r}")
        except ValueError as exc:
            raise EventFileError(f"{path}: line {n}: {exc}. Nothing from this file was stored.") from None
        parsed.by_epoch.setdefault(epoch, []).append(event)
    return parsed


def find_events_files(root: Path) -> list[Path]:
    """Events files under ROOT: ``*.events.jsonl`` anywhere, and ``*.jsonl`` in a ``lessoncast-events`` folder."""
    if root.is_file():
        return [root]
    found = {p for p in root.rglob("*.events.jsonl") if p.is_file()}
    found |= {p for p in root.rglob("lessoncast-events/*.jsonl") if p.is_file()}
    return sorted(found)


def gaps(acked: int, ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The missing (first, last) sequence ranges after ACKED, given the stored (first, last) RANGES beyond it."""
    missing: list[tuple[int, int]] = []
    covered = acked
    for first, last in sorted(ranges):
        if first > covered + 1:
            missing.append((covered + 1, first - 1))
        covered = max(covered, last)
    return missing
