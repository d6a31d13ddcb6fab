"""Event ingest: store the event batches devices send (over MQTT or on a USB stick), then acknowledge them.

Why acks are contiguous: a device deletes from its outbox every event with ``seq <= ack``, so the server may ack
*n* only when every event 1..n of the epoch is committed. A batch that arrives early is stored, but the ack waits
until the gap before it is filled. A quarantined batch counts as stored: otherwise one unreadable batch would hold
the device's outbox back for ever. Events are stored under UNIQUE(device, event id), so resending is harmless.

The ack is a retained message row (``server.retained``) written in the same transaction as the events, so the
device is never told about events the database has not committed, and a broker that is down loses no ack.

This module stores; ``server.event_batches`` parses what devices send, and ``server.ingest_loop`` is the MQTT loop
(``Ingest``, re-exported here).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Mapping, Optional

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from playlists import topics
from server import retained
from server.event_batches import (Event, EventFileError, ack_payload, batch_range, contiguous_end,
                                  find_events_files, parse_batch, read_events_file, strict_json)
from server.event_models import DeviceEvent, DeviceSequence, DeviceStatus, QuarantinedBatch
from server.ingest_loop import Ingest
from server.org_models import Device

log = logging.getLogger(__name__)

INSERT_CHUNK = 200  # rows per INSERT: well under SQLite's bound-parameter limit
# The parsing and the MQTT loop live in their own modules; the CLI and the tests reach them through this one.
__all__ = ["Event", "EventFileError", "ImportResult", "Ingest", "Stored", "ack_payload", "acks_for_devices",
           "batch_range", "contiguous_end", "find_events_files", "import_events_file", "parse_batch",
           "read_events_file", "store_batch", "store_in", "store_status"]


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


def _insert(session: Session):
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _lock_sequence(session: Session, device: str, epoch: int, now: datetime) -> DeviceSequence:
    # The first statement writes, so SQLite takes its write lock here and everything after reads a settled
    # database; PostgreSQL locks the row, so two ingest processes advance one device's ack one after the other.
    session.execute(_insert(session)(DeviceSequence)
                    .values(device_uid=device, epoch=epoch, acked=0, updated_at=now)
                    .on_conflict_do_nothing(index_elements=["device_uid", "epoch"]))
    return session.scalars(select(DeviceSequence)
                           .where(DeviceSequence.device_uid == device, DeviceSequence.epoch == epoch)
                           .with_for_update().execution_options(populate_existing=True)).one()


def _insert_events(session: Session, device: str, epoch: int, events: list[Event], now: datetime) -> int:
    insert = _insert(session)
    inserted = 0
    for start in range(0, len(events), INSERT_CHUNK):
        rows = [{"device_uid": device, "epoch": epoch, "seq": e.seq, "seq_last": e.seq_last, "event_id": e.event_id,
                 "type": e.type, "body": e.body, "device_time": e.device_time, "received_at": now}
                for e in events[start:start + INSERT_CHUNK]]
        result = session.execute(insert(DeviceEvent).values(rows)
                                 .on_conflict_do_nothing(index_elements=["device_uid", "event_id"]))
        inserted += result.rowcount
    return inserted


def _advance(session: Session, seq_row: DeviceSequence, new_ranges: list[tuple[int, int]], now: datetime) -> int:
    device, epoch, acked = seq_row.device_uid, seq_row.epoch, seq_row.acked
    # Only ranges starting after the ack can extend it, plus what this transaction added: an older range that
    # started at or before the ack was walked over when the ack reached its start (that walk is in the same
    # transaction as every insert), so it ends at or before the ack. This keeps the walk on the (device, epoch,
    # seq) index instead of scanning a device's whole history on every batch.
    ranges = list(new_ranges)
    ranges += session.execute(select(DeviceEvent.seq, DeviceEvent.seq_last).where(
        DeviceEvent.device_uid == device, DeviceEvent.epoch == epoch, DeviceEvent.seq > acked)).all()
    ranges += session.execute(select(QuarantinedBatch.seq_first, QuarantinedBatch.seq_last).where(
        QuarantinedBatch.device_uid == device, QuarantinedBatch.epoch == epoch,
        QuarantinedBatch.seq_first > acked)).all()
    end = contiguous_end(acked, ranges)
    if end != acked:
        seq_row.acked, seq_row.updated_at = end, now
    return end


def _enrolled(session: Session, device: str) -> bool:
    return session.scalar(select(Device.state).where(Device.uid == device)) == "enrolled"


def store_in(session: Session, device: str, epoch: int, first: int, last: int, events: Optional[list[Event]],
             payload: bytes, reason: Optional[str], now: datetime) -> Stored:
    """Store one batch in SESSION (quarantined when REASON is given), advance the ack and set its retained row."""
    seq_row = _lock_sequence(session, device, epoch, now)
    if reason is None and events and not _enrolled(session, device):
        reason = f"device {device} is not enrolled (revoked or unknown)"
    inserted = duplicates = 0
    if reason is not None:
        session.add(QuarantinedBatch(device_uid=device, epoch=epoch, seq_first=first, seq_last=last,
                                     payload=bytes(payload), reason=reason, received_at=now))
        session.flush()
        log.error("QUARANTINED events of %s, epoch %d, seq %d-%d (%d bytes): %s. The range counts as stored; "
                  "the raw batch is kept in quarantined_batches.", device, epoch, first, last, len(payload), reason)
        new_ranges = [(first, last)]
    else:
        events = events or []
        inserted = _insert_events(session, device, epoch, events, now)
        duplicates = len(events) - inserted
        new_ranges = [(e.seq, e.seq_last) for e in events]
    acked = _advance(session, seq_row, new_ranges, now)
    retained.put(session, topics.ack(device), ack_payload(epoch, acked), now)
    return Stored(epoch, acked, inserted, duplicates, reason is not None)


def store_batch(services, device: str, properties: Mapping[str, str], payload: bytes,
                now: datetime) -> Optional[tuple[int, int]]:
    """Store a batch DEVICE published (DEVICE comes from the topic); return (epoch, acked), or None if dropped.

    An unreadable or inconsistent batch is quarantined when its user properties give its epoch and range; without
    them nothing could acknowledge it, so it is dropped with an error (the device sends it again).
    """
    try:
        epoch, first, last = batch_range(properties)
    except ValueError as exc:
        log.error("DROPPED a batch on %s (%d bytes): %s; nothing can acknowledge it",
                  topics.events(device), len(payload), exc)
        return None
    reason, events = None, None
    try:
        events = parse_batch(device, properties, payload, epoch, first, last)
    except ValueError as exc:
        reason = str(exc)
    with services.db.session() as session:
        stored = store_in(session, device, epoch, first, last, events, payload, reason, now)
    log.debug("%s epoch %d seq %d-%d: %d new, %d again; ack %d", device, epoch, first, last, stored.inserted,
              stored.duplicates, stored.acked)
    return stored.epoch, stored.acked


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
    values = {"device_uid": device, "body": body, "online": online, "received_at": now}
    with services.db.session() as session:
        if session.scalar(select(Device.id).where(Device.uid == device)) is None:
            log.warning("status of %s ignored: no such device", device)
            return False
        stmt = _insert(session)(DeviceStatus).values(**values)
        if retained_copy:
            return session.execute(stmt.on_conflict_do_nothing(index_elements=["device_uid"])).rowcount > 0
        session.execute(stmt.on_conflict_do_update(index_elements=["device_uid"],
                                                   set_={k: values[k] for k in ("body", "online", "received_at")}))
    return True


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
            result = store_in(session, parsed.device, epoch, first, last, events, parsed.raw, None, now)
            stored += result.inserted
            duplicates += result.duplicates
            quarantined += len(events) if result.quarantined else 0
            if epoch == parsed.epoch:
                acked = result.acked
    retained.flush_quietly(services)
    return ImportResult(parsed.device, stored, duplicates, acked, parsed.epoch, quarantined)

