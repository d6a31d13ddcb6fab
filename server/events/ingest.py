"""Event ingest: store the event batches devices send (over MQTT or on a USB stick), then acknowledge them.

Why acks are contiguous: a device deletes from its outbox every event with ``seq <= ack``, so the server may ack
*n* only when every event 1..n of the epoch is committed. A batch that arrives early is stored, but the ack waits
until the gap before it is filled. A quarantined batch counts as stored: otherwise one unreadable batch would hold
the device's outbox back for ever. Events are stored under UNIQUE(device, event id), so resending is harmless.

The ack is a retained message row (``server.messaging.retained``) written in the same transaction as the events, so the
device is never told about events the database has not committed, and a broker that is down loses no ack.

This module stores; ``server.events.batches`` parses what devices send, and ``server.events.ingest_loop`` is the MQTT
loop (``Ingest``, re-exported here).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping, Optional

from sqlalchemy import select, tuple_
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from playlists import topics
from server.attendance import fold as attendance
from server.attendance.fold import Attributed, Lookups
from server.attendance.rules import Rules
from server.db import upsert_insert
from server.devices.models import Device
from server.events.batches import (MAX_SEQ, Event, EventFileError, ack_payload, batch_range, contiguous_end,
                                   parse_batch, read_events_file, strict_json)
from server.events.models import (DeviceEvent, DeviceSequence, DeviceStatus, DeviceStatusHistory, DeviceStatusHourly,
                                  QuarantinedBatch)
from server.events.rollup import add_report, hour_of
from server.messaging import retained
from server.org import cards
from server.org.models import Member

log = logging.getLogger(__name__)

INSERT_CHUNK = 200  # rows per INSERT: well under SQLite's bound-parameter limit
ADVANCE_CHUNK = 2000  # stored ranges beyond the ack read at a time when the ack moves over them


# ---------------------------------------------------------------------------------------------------------------
# Storing


@dataclass(frozen=True)
class Stored:
    """What storing one batch did."""

    epoch: int
    acked: int
    inserted: int = 0
    duplicates: int = 0
    quarantined: bool = False


def _lock_sequences(session: Session, keys: list[tuple[str, int]], now: datetime) -> dict[tuple[str, int],
                                                                                       DeviceSequence]:
    """The sequence rows of KEYS (device, epoch), created if new and locked, in two statements for all of them.

    The first statement writes, so SQLite takes its write lock here and everything after reads a settled database;
    PostgreSQL locks the rows in (device, epoch) order, so two ingest processes advance one device's ack one after
    the other and never deadlock."""
    keys = sorted(set(keys))
    session.connection().execute(
        upsert_insert(session)(DeviceSequence.__table__).on_conflict_do_nothing(index_elements=["device_uid", "epoch"]),
        [{"device_uid": device, "epoch": epoch, "acked": 0, "updated_at": now} for device, epoch in keys])
    rows = session.scalars(select(DeviceSequence)
                           .where(tuple_(DeviceSequence.device_uid, DeviceSequence.epoch).in_(keys))
                           .order_by(DeviceSequence.device_uid, DeviceSequence.epoch)
                           .with_for_update().execution_options(populate_existing=True)).all()
    return {(row.device_uid, row.epoch): row for row in rows}


def _stored_ids(session: Session, device: str, ids: list[str]) -> set[str]:
    """Which of IDS the device already has stored. The caller holds the device's sequence row lock, so no other
    ingest stores this device's events meanwhile and the answer stays true until the commit."""
    stored: set[str] = set()
    for start in range(0, len(ids), 500):
        stored.update(session.scalars(select(DeviceEvent.event_id).where(
            DeviceEvent.device_uid == device, DeviceEvent.event_id.in_(ids[start:start + 500]))))
    return stored


def _any_stored(session: Session, device: str, epoch: int, low: int, high: int) -> bool:
    """Whether an event of DEVICE's EPOCH with a sequence number from LOW to HIGH is stored."""
    return session.scalar(select(DeviceEvent.id).where(
        DeviceEvent.device_uid == device, DeviceEvent.epoch == epoch, DeviceEvent.seq >= low,
        DeviceEvent.seq <= high).limit(1)) is not None


class _EventRows:
    """The device_events rows a group commit stores, written in one ``executemany`` when the group is done, or
    earlier when a query must see them (``flush``). The ids it holds count as stored for a later batch's
    duplicate check in the same transaction."""

    def __init__(self, session: Session):
        self.session = session
        self.rows: list = []
        self.ids: dict[str, set[str]] = {}

    def add(self, device: str, rows: list, ids: Iterable[str]) -> None:
        self.rows.extend(rows)
        self.ids.setdefault(device, set()).update(ids)

    def flush(self) -> None:
        rows, self.rows = self.rows, []
        _insert_rows(self.session, rows)


def _insert_rows(session: Session, rows: list) -> None:
    """Insert ROWS (tuples from ``_rows``) through the driver, one ``executemany``: SQLAlchemy's per-value
    conversions were most of the cost of storing a batch (psycopg pipelines the statements on PostgreSQL)."""
    if not rows:
        return
    postgres = session.get_bind().dialect.name == "postgresql"
    session.connection().exec_driver_sql(_POSTGRES_INSERT if postgres else _SQLITE_INSERT, rows)


_EVENT_COLUMNS = ("device_uid", "epoch", "seq", "seq_last", "event_id", "type", "body", "device_time",
                  "received_at", "at", "clock_flag")
_ON_CONFLICT = "ON CONFLICT (device_uid, event_id) DO NOTHING"
_SQLITE_INSERT = (f"INSERT INTO device_events ({', '.join(_EVENT_COLUMNS)}) VALUES ({', '.join('?' * 11)}) "
                  f"{_ON_CONFLICT}")
# psycopg sends a str as an untyped literal, so the JSON text and the times' text are cast by the columns' types.
_POSTGRES_INSERT = (f"INSERT INTO device_events ({', '.join(_EVENT_COLUMNS)}) VALUES ({', '.join(['%s'] * 11)}) "
                    f"{_ON_CONFLICT}")


def _time_text(value: Optional[datetime]) -> Optional[str]:
    # What SQLAlchemy's SQLite DateTime stores for server.db.UTCDateTime: naive UTC with microseconds; PostgreSQL
    # casts the same text to its timestamp column.
    if value is None:
        return None
    if value.tzinfo is not timezone.utc:
        value = value.astimezone(timezone.utc)
    return value.isoformat(" ", "microseconds")[:-6]  # without its "+00:00": twice as fast as replace(tzinfo=None)


def _rows(device: str, epoch: int, events: list[Event], attributed: list[Attributed], now: datetime) -> list:
    """The device_events rows of a batch, ready before the transaction: tuples converted exactly as the model's column
    types would (naive UTC time text, the event's JSON as the device sent it), for SQLite and PostgreSQL alike."""
    dumps, received, text = json.dumps, _time_text(now), _time_text
    rows = []
    for e, a in zip(events, attributed):
        device_time = text(e.device_time)
        # The attributed time is most often the device's own clock (no offset): the same object, written once.
        rows.append((device, epoch, e.seq, e.seq_last, e.event_id, e.type,
                     e.text if e.text is not None else dumps(e.body), device_time, received,
                     device_time if a.at is e.device_time else received if a.at is now else text(a.at), a.flag))
    return rows


def _advance(session: Session, seq_row: DeviceSequence, new_ranges: list[tuple[int, int]], now: datetime,
             pending: _EventRows) -> int:
    device, epoch, acked = seq_row.device_uid, seq_row.epoch, seq_row.acked
    # Invariant: after every commit the ack is as far as the stored ranges reach, so no range stored before starts
    # at or before ack + 1 and ends beyond the ack. Hence only a new range that reaches ack + 1 can move the ack,
    # and only then are the ranges stored beyond it read, in seq order on the (device, epoch, seq) index, a chunk
    # at a time until the first gap. A gap (a device that never sends seq 1, or a lost batch) costs nothing per
    # batch, and each stored range is read about once, when the ack passes it.
    end = contiguous_end(acked, new_ranges)
    low = acked
    while end > acked and seq_row.stored_max > low:
        pending.flush()  # the ranges this group stored so far must be read too
        # Plain tuples, not result rows: sorting a few hundred rows compared them through Python (Row.__gt__), and
        # that was most of what an out-of-turn batch cost (two ingest processes share each device's batches).
        rows = list(map(tuple, session.execute(select(DeviceEvent.seq, DeviceEvent.seq_last).where(
            DeviceEvent.device_uid == device, DeviceEvent.epoch == epoch, DeviceEvent.seq > low)
            .order_by(DeviceEvent.seq).limit(ADVANCE_CHUNK))))
        horizon = rows[-1][0] if len(rows) == ADVANCE_CHUNK else MAX_SEQ  # every range starting up to here is read
        held = list(map(tuple, session.execute(select(QuarantinedBatch.seq_first, QuarantinedBatch.seq_last).where(
            QuarantinedBatch.device_uid == device, QuarantinedBatch.epoch == epoch,
            QuarantinedBatch.seq_first > low, QuarantinedBatch.seq_first <= horizon))))
        end = contiguous_end(end, [*rows, *held, *new_ranges])
        if end < horizon or horizon == MAX_SEQ:
            break
        low = horizon
    seq_row.stored_max = max([seq_row.stored_max, end] + [last for _first, last in new_ranges])
    if end != acked:
        seq_row.acked, seq_row.updated_at = end, now
    return end


def _apply_attendance_many(session: Session, folded: list, rules: Rules) -> None:
    """Write the attendance of a group's batches, FOLDED as (device, new events, delta, fold error), in one savepoint
    and a fixed number of statements. If that fails for any reason but contention, each batch is written again on
    its own (``_apply_attendance``), so one batch's trouble is counted against that batch only."""
    if len(folded) > 1 and all(error is None for _d, _n, _delta, error in folded):
        deltas = [(device, delta) for device, _new, delta, _error in folded if delta is not None]
        try:
            with session.begin_nested():
                attendance.write_many(session, deltas, rules)
            return
        except SQLAlchemyError as exc:
            if _contention(exc):
                raise
            log.warning("writing the attendance of %d batches together failed (%s); writing them one by one",
                        len(folded), exc)
        except _FOLD_ERRORS as exc:
            log.warning("writing the attendance of %d batches together failed (%r); writing them one by one",
                        len(folded), exc)
    for device, new, delta, fold_error in folded:
        _apply_attendance(session, device, new, delta, fold_error, rules)


def _contention(exc: SQLAlchemyError) -> bool:
    text = str(exc).lower()
    return "lock" in text or "deadlock" in text or "serializ" in text


def _apply_attendance(session: Session, device: str, new: list[Attributed], delta, fold_error, rules: Rules) -> None:
    """Write the batch's attendance in a savepoint: if that fails (a bug, or data nothing foresaw), the events are
    still stored and acked, the failure is counted in the device's record, and a rebuild can retry it."""
    if fold_error is not None:
        return _attendance_failed(session, device, new, fold_error)
    if delta is None:
        return
    try:
        with session.begin_nested():
            attendance.write(session, delta, device, rules)
    except SQLAlchemyError as exc:
        if _contention(exc):
            raise  # contention: the whole batch is retried (not acked), nothing is lost
        _attendance_failed(session, device, new, exc)
    except _FOLD_ERRORS as exc:
        _attendance_failed(session, device, new, exc)


def _attendance_failed(session: Session, device: str, new: list[Attributed], exc: Exception) -> None:
    log.exception("attendance could not count %d events of %s (%s); they are stored, and 'lessoncast attendance "
                  "rebuild' counts them once the cause is fixed", len(new), device, exc)
    delta = attendance.Delta()
    for e in new:
        delta.exclude("attendance_error", e.event_id)
    attendance.write(session, delta, device, Rules())


def _enrolled(session: Session, devices: set[str]) -> set[str]:
    """Which of DEVICES are enrolled, in one query (500 at a time)."""
    uids, found = sorted(devices), set()
    for start in range(0, len(uids), 500):
        found.update(session.scalars(select(Device.uid).where(Device.uid.in_(uids[start:start + 500]),
                                                              Device.state == "enrolled")))
    return found


@dataclass
class Prepared:
    """A batch made ready outside the transaction: parsed events with their attributed times, their rows, and what
    they add to attendance (assuming none is a duplicate, the usual case; ``commit`` re-folds if some are)."""

    device: str
    epoch: int
    first: int
    last: int
    events: Optional[list[Event]]
    payload: bytes
    reason: Optional[str]
    received_at: datetime
    facts: Optional[attendance.DeviceFacts] = None
    attributed: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    delta: Optional[attendance.Delta] = None
    fold_error: Optional[Exception] = None


_FOLD_ERRORS = (ValueError, TypeError, OverflowError, KeyError, ArithmeticError)


def _without_card_tokens(session: Session, events: list[Event], key: bytes) -> list[Event]:
    """EVENTS with each check-in's card token replaced by its keyed digest (server/org/cards.py), stored as such; a
    member number stays.

    The event's exact text is given up for those events only: it would keep the token. Nothing depends on the
    text being the device's: duplicates are recognised by (device, event id), and attendance is folded from the
    body, whose digest matches the member's stored card."""
    checkins = [i for i, e in enumerate(events) if e.type == "checkin" and cards.credential_of(e.body)]
    if not checkins:
        return events

    given = {cards.credential_of(events[i].body) for i in checkins}
    numbers = set(session.scalars(select(Member.member_no).where(Member.member_no.in_(sorted(given)))))
    out = list(events)
    for i in checkins:
        body = cards.redact_checkin(events[i].body, key, numbers)
        if body is not events[i].body:
            out[i] = events[i]._replace(body=body, text=None)
    return out


def prepare(session: Session, device: str, epoch: int, first: int, last: int, events: Optional[list[Event]],
            payload: bytes, reason: Optional[str], now: datetime, rules: Rules, lookups: Lookups) -> Prepared:
    """Everything about a batch that needs no lock: attribution, rows, the attendance fold (SESSION only reads).

    Done before the write transaction, so several ingest processes parse and fold in parallel and hold SQLite's
    write lock (or PostgreSQL's row locks) only to write."""
    p = Prepared(device, epoch, first, last, events, payload, reason, now)
    if reason is not None or not events:
        return p
    p.facts = lookups.device(session, device)
    events = p.events = _without_card_tokens(session, events, rules.card_key)
    p.attributed = attendance.attribute(events, now, p.facts, rules)
    p.rows = _rows(device, epoch, events, p.attributed, now)
    try:
        p.delta = attendance.fold_batch(session, p.facts, p.attributed, lookups, rules)
    except _FOLD_ERRORS as exc:
        p.fold_error = exc
    return p


def commit(session: Session, p: Prepared, rules: Rules, lookups: Lookups) -> Stored:
    """Store one prepared batch in SESSION (see ``commit_many``)."""
    return commit_many(session, [p], rules, lookups)[0]


def commit_many(session: Session, batches: list[Prepared], rules: Rules, lookups: Lookups) -> list[Stored]:
    """Store prepared BATCHES in SESSION (each quarantined when it has a reason), fold their new events into
    attendance, advance their acks and set their retained rows; what each did, in order.

    The statements are per group, not per batch: one to create and one to lock every sequence row, one enrolment
    query, one read of the ack rows, one ``executemany`` of all the events, and the attendance of all the batches
    merged (``attendance.write_many``); the ORM then writes the changed sequence and ack rows in one
    ``executemany`` each. Batches are handled in order, so a later batch of the same device sees what an earlier
    one stored (its events count as stored, and the ack walk reads them) and nothing is counted twice."""
    if not batches:
        return []
    seq_rows = _lock_sequences(session, [(p.device, p.epoch) for p in batches], batches[0].received_at)
    enrolled = _enrolled(session, {p.device for p in batches if p.reason is None and p.events})
    ack_rows = retained.load(session, {topics.ack(p.device) for p in batches})  # kept: put() finds them in the session
    pending = _EventRows(session)
    folded: list[tuple[str, list[Attributed], Optional[attendance.Delta], Optional[Exception]]] = []
    results = []
    for p in batches:
        device, epoch, first, last, now = p.device, p.epoch, p.first, p.last, p.received_at
        seq_row = seq_rows[(device, epoch)]
        reason, rejected = p.reason, False
        if reason is None and p.events and device not in enrolled:
            reason, rejected = f"device {device} is not enrolled (revoked or unknown)", True
        inserted = duplicates = 0
        if reason is not None:
            if rejected:
                seq_row.rejected += 1
            else:
                seq_row.quarantined += 1
            session.add(QuarantinedBatch(device_uid=device, epoch=epoch, seq_first=first, seq_last=last,
                                         payload=bytes(p.payload), reason=reason, received_at=now))
            session.flush()
            log.error("QUARANTINED events of %s, epoch %d, seq %d-%d (%d bytes): %s. The range counts as stored; "
                      "the raw batch is kept in quarantined_batches.", device, epoch, first, last, len(p.payload),
                      reason)
            new_ranges = [(first, last)]
        else:
            events = p.events or []
            keep = _new_indexes(session, device, epoch, events, seq_row.stored_max, pending.ids.get(device, ()))
            new = [p.attributed[i] for i in keep]
            rows, delta, fold_error = p.rows, p.delta, p.fold_error
            if len(keep) != len(events):  # some were stored before: count only the others, never one twice
                rows = [p.rows[i] for i in keep]
                delta, fold_error = None, None
                try:
                    delta = attendance.fold_batch(session, p.facts, new, lookups, rules)
                except _FOLD_ERRORS as exc:
                    fold_error = exc
            pending.add(device, rows, (e.event_id for e in new))
            inserted, duplicates = len(new), len(events) - len(new)
            seq_row.events += inserted
            seq_row.duplicates += duplicates
            seq_row.clock_flagged += sum(1 for e in new if e.flag is not None)
            if new:
                seq_row.last_event_at = now
                folded.append((device, new, delta, fold_error))
            new_ranges = [(e.seq, e.seq_last) for e in events]
        before = seq_row.acked
        acked = _advance(session, seq_row, new_ranges, now, pending)
        # A batch that moves nothing (a resend of what is stored) means the device has not seen its ack: the
        # broker's copy was lost (a crash before it saved) or is an older one. Publish the ack again.
        retained.put(session, topics.ack(device), ack_payload(epoch, acked), now,
                     again=acked == before and last <= acked)
        results.append(Stored(epoch, acked, inserted, duplicates, reason is not None))
    pending.flush()
    _apply_attendance_many(session, folded, rules)
    del ack_rows
    return results


def _new_indexes(session: Session, device: str, epoch: int, events: list[Event], stored_max: int,
                 pending: Iterable[str] = ()) -> list[int]:
    """Indexes of the events not stored yet (nor PENDING in this transaction, nor repeated earlier in the batch).

    A device sends an event again with the sequence number it first had (its outbox keeps both), so a batch none
    of whose sequence numbers is stored cannot hold a stored event and needs no look-up of its ids: a batch wholly
    beyond STORED_MAX (the usual case), or one that arrives after a later batch of its device was stored (by the
    other ingest process, say), which one probe of the (device, epoch, seq) index tells."""
    if not events:
        return []
    low = min(e.seq for e in events)
    stored = _stored_ids(session, device, [e.event_id for e in events]) \
        if low <= stored_max and _any_stored(session, device, epoch, low, max(e.seq for e in events)) else set()
    keep, seen = [], set(pending)
    for i, e in enumerate(events):
        if e.event_id not in stored and e.event_id not in seen:
            seen.add(e.event_id)
            keep.append(i)
    return keep


def store_in(session: Session, device: str, epoch: int, first: int, last: int, events: Optional[list[Event]],
             payload: bytes, reason: Optional[str], now: datetime, rules: Optional[Rules] = None,
             lookups: Optional[Lookups] = None) -> Stored:
    """Prepare and store one batch in SESSION (see ``prepare`` and ``commit``)."""
    rules = rules or Rules()
    lookups = lookups or Lookups()
    return commit(session, prepare(session, device, epoch, first, last, events, payload, reason, now, rules,
                                   lookups), rules, lookups)


def store_batch(services, device: str, properties: Mapping[str, str], payload: bytes, now: datetime,
                lookups: Optional[Lookups] = None) -> Optional[tuple[int, int]]:
    """Store a batch DEVICE published (DEVICE comes from the topic); return (epoch, acked), or None if dropped.

    An unreadable or inconsistent batch is quarantined when its user properties give its epoch and range; without
    them nothing could acknowledge it, so it is dropped with an error (the device sends it again).
    """
    stored = store_batches(services, [Incoming(device, properties, payload, now)], lookups)[0]
    if stored is None:
        return None
    log.debug("%s epoch %d: %d new, %d again; ack %d", device, stored.epoch, stored.inserted, stored.duplicates,
              stored.acked)
    return stored.epoch, stored.acked


def quarantine_batch(services, device: str, properties: Mapping[str, str], payload: bytes, now: datetime,
                     reason: str) -> Optional[Stored]:
    """Quarantine a batch that could not be stored (the database refused it, or a bug tripped over it): its range
    counts as stored, so the device is not stuck resending it. None when it names no range (then it is dropped)."""
    try:
        epoch, first, last = batch_range(properties)
    except ValueError:
        return None
    with services.db.session() as session:
        return store_in(session, device, epoch, first, last, None, payload[:services.settings.ingest_max_batch_bytes],
                        reason, now, services.rules)


@dataclass(frozen=True)
class Incoming:
    """One events batch as it came from the broker: the topic's device, user properties, payload, arrival time."""

    device: str
    properties: Mapping[str, str]
    payload: bytes
    received_at: datetime


def store_batches(services, batches: list[Incoming], lookups: Optional[Lookups] = None) -> list[Optional[Stored]]:
    """Store several batches in one transaction (one commit for all: group commit); their results, in order.

    Batches are stored in (device, epoch) order, so two ingest processes on PostgreSQL lock devices' sequence rows
    in the same order. If the transaction fails, the caller stores them one by one (``store_batch``), so one
    batch's trouble never holds the others back. A batch without its range properties is dropped (None).
    """
    parsed = []
    max_batch = services.settings.ingest_max_batch_bytes
    for n, b in enumerate(batches):
        try:
            epoch, first, last = batch_range(b.properties)
        except ValueError as exc:
            log.error("DROPPED a batch on %s (%d bytes): %s; nothing can acknowledge it",
                      topics.events(b.device), len(b.payload), exc)
            continue
        reason, events, payload = None, None, b.payload
        if len(payload) > max_batch:
            # Kept only up to the limit: a quarantined batch is for an operator to read, not a way to fill the disk.
            reason, payload = (f"batch: {len(payload):,} bytes is over the {max_batch:,}-byte limit "
                               "(LESSONCAST_INGEST_MAX_BATCH_BYTES); the agent sends at most 200 events a batch"), \
                payload[:max_batch]
        else:
            try:
                events = parse_batch(b.device, b.properties, payload, epoch, first, last,
                                     services.settings.ingest_max_event_bytes)
            except ValueError as exc:
                reason = str(exc)
        parsed.append((b.device, epoch, first, n, last, events, reason, Incoming(b.device, b.properties, payload,
                                                                                 b.received_at)))
    results: list[Optional[Stored]] = [None] * len(batches)
    rules, lookups = services.rules, lookups or Lookups()
    with services.db.sessions() as read:  # the work that needs no lock, before the write transaction
        ready = [(key, prepare(read, device, epoch, first, last, events, b.payload, reason, b.received_at, rules,
                               lookups))
                 for key, (device, epoch, first, _n, last, events, reason, b) in
                 sorted(((p[:4], p) for p in parsed), key=lambda kp: kp[0])]
    with services.db.session() as session:
        for (_device, _epoch, _first, n), stored in zip((key for key, _p in ready),
                                                        commit_many(session, [p for _key, p in ready], rules,
                                                                    lookups)):
            results[n] = stored
    return results


def store_status(services, device: str, payload: bytes, now: datetime, retained_copy: bool = False) -> bool:
    """Record the status (or last will) DEVICE published; False when it was empty, unreadable or not a device's.

    A RETAINED_COPY is the broker's stored status, sent because ingest subscribed anew, not because the device
    spoke now: it only fills in a device the server has no status for, and never overwrites a newer one.
    """
    if not payload:
        return False  # an empty retained payload only clears the broker's copy
    try:
        body = strict_json(payload, "status")
        if not isinstance(body, dict):
            raise ValueError(f"status: {type(body).__name__} given, a JSON object expected")
        online = body.get("online", True)
        if not isinstance(online, bool):
            raise ValueError(f"status.online: {online!r} is not true or false")
    except ValueError as exc:
        log.warning("status of %s ignored: %s", device, exc)
        return False
    with services.db.session() as session:
        if session.scalar(select(Device.id).where(Device.uid == device)) is None:
            log.warning("status of %s ignored: no such device", device)
            return False
        row = session.get(DeviceStatus, device, with_for_update=True)
        if row is not None and retained_copy:
            return False
        if row is None:
            row = DeviceStatus(device_uid=device)
            session.add(row)
        if set(body) <= {"online"} and row.body is not None:
            # A last will says only that the device went offline: keep what it reported before.
            row.body, row.online = {**row.body, "online": online}, online
            session.add(DeviceStatusHistory(device_uid=device, at=now, online=online))
            _add_to_hour(session, device, now, online, None, None)
        else:
            row.body, row.online, row.received_at = body, online, now
            columns = fleet_columns(body)
            for column, value in columns.items():
                setattr(row, column, value)
            session.add(DeviceStatusHistory(device_uid=device, at=now, online=online,
                                            **{k: columns[k] for k in HISTORY_COLUMNS}))
            _add_to_hour(session, device, now, online, columns["battery"], columns["storage_free_mb"])
        if row.received_at is None:
            row.received_at = now
    return True


def _add_to_hour(session: Session, device: str, at: datetime, online: bool, battery, storage_free_mb) -> None:
    """Add the status to its hour's rollup row, in the status's transaction. The device's ``DeviceStatus`` row is
    locked first (``with_for_update``), so two statuses of one device never add to the same hour at once."""
    hour = hour_of(at)
    row = session.get(DeviceStatusHourly, (device, hour), with_for_update=True)
    if row is None:
        row = DeviceStatusHourly(device_uid=device, hour=hour)
        session.add(row)
    add_report(row, at, online, battery, storage_free_mb)


# What the device page charts of each status (DeviceStatusHistory); fleet_columns gives them.
HISTORY_COLUMNS = ("battery", "storage_free_mb", "manifest_version", "sync_state", "outbox_depth")


def fleet_columns(body: Mapping) -> dict:
    """The fleet table's columns from a status body; a field of the wrong type is left empty, not trusted."""
    def number(key):
        value = body.get(key)
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and \
            -2**31 < value < 2**31 else None

    def text(key, size):
        value = body.get(key)
        return value[:size] if isinstance(value, str) else None

    stale = body.get("stale")
    return {"battery": number("battery"), "storage_free_mb": number("storage_free_mb"),
            "firmware": text("firmware", 64), "agent_version": text("agent_version", 32),
            "manifest_version": number("manifest_version"), "sync_state": text("sync", 32),
            "stale": stale if isinstance(stale, bool) else None, "outbox_depth": number("queue")}


def acks_for_devices(session: Session, uids: Iterable[str]) -> dict[str, dict[str, int]]:
    """Each device's ack in its newest epoch, {uid: {"epoch": e, "seq": n}}; devices with none are left out."""
    uids = list(uids)
    acks: dict[str, dict[str, int]] = {}
    for start in range(0, len(uids), 500):
        rows = session.execute(select(DeviceSequence.device_uid, DeviceSequence.epoch, DeviceSequence.acked)
                               .where(DeviceSequence.device_uid.in_(uids[start:start + 500]))).all()
        for uid, epoch, acked in rows:
            if uid not in acks or epoch > acks[uid]["epoch"]:
                acks[uid] = {"epoch": epoch, "seq": acked}
    return acks


# ---------------------------------------------------------------------------------------------------------------
# Importing what a radio wrote onto a USB stick or SD card


@dataclass(frozen=True)
class ImportResult:
    """What importing one events file did."""

    device: str
    stored: int
    duplicates: int
    acked: int
    epoch: int = 1
    quarantined: int = 0



def import_events_file(services, path: Path) -> ImportResult:
    """Store the events of one file as if they had come over MQTT (again: nothing twice), and update the acks."""
    parsed = read_events_file(path)
    now = services.clock()
    stored = duplicates = quarantined = 0
    acked = 0
    with services.db.session() as session:
        if session.scalar(select(Device.id).where(Device.uid == parsed.device)) is None:
            raise EventFileError(f"{path}: device {parsed.device} is not known to this server. Was the stick "
                                 "written by another county's radio? See 'lessoncast device list'.")
        epochs = dict(parsed.by_epoch)
        epochs.setdefault(parsed.epoch, [])  # the header's epoch always gets its ack, even with no events
        for epoch, events in sorted(epochs.items()):
            first = min((e.seq for e in events), default=1)
            last = max((e.seq_last for e in events), default=1)
            result = store_in(session, parsed.device, epoch, first, last, events, parsed.raw, None, now,
                              services.rules)
            stored += result.inserted
            duplicates += result.duplicates
            quarantined += len(events) if result.quarantined else 0
            if epoch == parsed.epoch:
                acked = result.acked
    retained.flush_quietly(services)
    return ImportResult(parsed.device, stored, duplicates, acked, parsed.epoch, quarantined)

