"""Event ingest: store the event batches devices send (over MQTT or on a USB stick), then acknowledge them.

Why acks are contiguous: a device deletes from its outbox every event with ``seq <= ack``, so the server may ack
*n* only when every event 1..n of the epoch is committed. A batch that arrives early is stored, but the ack waits
until the gap before it is filled. A quarantined batch counts as stored: otherwise one unreadable batch would hold
the device's outbox back for ever. Events are stored under UNIQUE(device, event id), so resending is harmless.

The ack is a retained message row (``server.retained``) written in the same transaction as the events, so the
device is never told about events the database has not committed, and a broker that is down loses no ack.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import signal
import socket
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from playlists import topics
from playlists.manifest import canonical_json
from server import retained
from server.event_models import DeviceEvent, DeviceSequence, DeviceStatus, QuarantinedBatch
from server.mqtt_link import BrokerAddress, BrokerUnavailable, ServerLink
from server.org_models import Device

log = logging.getLogger(__name__)

GROUP = "lessoncast"
BEAT_S = 5.0
# Long enough to cover an ingest restart or a server reboot; a decommissioned ingest's session (and the messages
# the broker queued for it) goes away after a day, and the devices send those events again anyway.
SESSION_EXPIRY_S = 86_400
MAX_SEQ = 2**31 - 1  # the columns are 32-bit integers
INSERT_CHUNK = 200  # rows per INSERT: well under SQLite's bound-parameter limit
_RANGE = re.compile(r"([0-9]{1,10})-([0-9]{1,10})")
_DECIMAL = re.compile(r"[0-9]{1,10}")


class EventFileError(ValueError):
    """An events file that cannot be imported; the message names the file, the line and what to do."""


# ---------------------------------------------------------------------------------------------------------------
# Parsing (pure)


@dataclass(frozen=True)
class Event:
    """One event as it will be stored: its id, sequence range, type, device clock and every field it came with."""

    event_id: str
    seq: int
    seq_last: int
    type: str
    device_time: Optional[datetime]
    body: dict[str, Any]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _strict_json(data: bytes, what: str) -> Any:
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


def _device_time(value: object) -> Optional[datetime]:
    # Stored for attendance to correct the clock; an unreadable device clock does not make the event worthless.
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.utcoffset() is not None else None


def parse_event(raw: object, where: str) -> Event:
    """The Event in RAW, or ValueError naming the field; every field RAW holds is kept as the body."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: {type(raw).__name__} given, a JSON object expected")
    try:
        event_id = str(uuid.UUID(raw.get("id"))) if isinstance(raw.get("id"), str) else None
    except ValueError:
        event_id = None
    if event_id is None:
        raise ValueError(f"{where}.id: {raw.get('id')!r} is not a UUID")
    seq = raw.get("seq")
    if not _is_int(seq) or not 1 <= seq <= MAX_SEQ:
        raise ValueError(f"{where}.seq: {seq!r} is not an integer from 1 to {MAX_SEQ}")
    seq_last = raw.get("seq_last", seq)
    if not _is_int(seq_last) or not seq <= seq_last <= MAX_SEQ:
        raise ValueError(f"{where}.seq_last: {seq_last!r} is not an integer from seq ({seq}) to {MAX_SEQ}")
    kind = raw.get("type")
    if not isinstance(kind, str) or not 1 <= len(kind) <= 32:
        raise ValueError(f"{where}.type: {kind!r} is not a type name of 1 to 32 characters")
    return Event(event_id, seq, seq_last, kind, _device_time(raw.get("device_time")), raw)


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
                last: int) -> list[Event]:
    """The events of a batch from DEVICE, or ValueError saying why the batch must be quarantined."""
    if properties.get("device") != device:
        raise ValueError(f"user property device {properties.get('device')!r} is not the topic's device {device!r}")
    body = _strict_json(payload, "batch")
    if not isinstance(body, dict):
        raise ValueError(f"batch: {type(body).__name__} given, a JSON object expected")
    if body.get("device") != device:
        raise ValueError(f"batch.device: {body.get('device')!r} is not the topic's device {device!r}")
    if body.get("epoch") != epoch or not _is_int(body.get("epoch")):
        raise ValueError(f"batch.epoch: {body.get('epoch')!r} is not the user property's epoch {epoch}")
    raw_events = body.get("events")
    if not isinstance(raw_events, list) or not raw_events:
        raise ValueError("batch.events: not a non-empty list")
    events = [parse_event(raw, f"batch.events[{n}]") for n, raw in enumerate(raw_events)]
    for n, event in enumerate(events):
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
        body = _strict_json(payload, "status")
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
        header = _strict_json(numbered[0][1], "header")
        if not isinstance(header, dict) or not topics.is_valid_id(header.get("device")):
            raise ValueError('not {"device": "<id>", "epoch": <n>} with a valid device id')
        if not _is_int(header.get("epoch")) or not 1 <= header["epoch"] <= MAX_SEQ:
            raise ValueError(f"epoch {header.get('epoch')!r} is not an integer >= 1")
    except ValueError as exc:
        raise EventFileError(f"{path}: line {numbered[0][0]}: bad header: {exc}") from None
    parsed = EventsFile(header["device"], header["epoch"], raw)
    for n, line in numbered[1:]:
        try:
            raw = _strict_json(line, "event")
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


def find_events_files(root: Path) -> list[Path]:
    """Events files under ROOT: ``*.events.jsonl`` anywhere, and ``*.jsonl`` in a ``lessoncast-events`` folder."""
    if root.is_file():
        return [root]
    found = {p for p in root.rglob("*.events.jsonl") if p.is_file()}
    found |= {p for p in root.rglob("lessoncast-events/*.jsonl") if p.is_file()}
    return sorted(found)


# ---------------------------------------------------------------------------------------------------------------
# The MQTT loop


@dataclass(frozen=True)
class _Message:
    kind: str
    device: str
    properties: dict[str, str]
    payload: bytes
    mid: int
    qos: int
    generation: int
    received_at: datetime
    retained: bool = False


class Ingest:
    """Subscribes (shared, persistent session) to every device's events and status, stores them and acks.

    paho's network thread only queues messages; one worker thread does the database work and then sends the
    broker its PUBACK (manual ack), so a message this process received but did not handle before it stopped is
    delivered again when the session resumes.

    Mosquitto 2.0 deals a shared subscription's messages round-robin to every member, including members whose
    persistent session is offline: with several ingest processes, a stopped one's share waits in its session until
    it returns (or the session expires and the devices send those events again).
    """

    def __init__(self, services, *, client_id: Optional[str] = None, group: str = GROUP,
                 session_expiry_s: int = SESSION_EXPIRY_S, beat_s: float = BEAT_S):
        self.services = services
        self.address = BrokerAddress.from_services(services)
        # Stable across restarts, so the broker resumes this process's session (and what it queued meanwhile).
        self.client_id = client_id or f"lessoncast-ingest-{socket.gethostname()}"
        self.filters = [topics.shared(group, topics.all_events()), topics.shared(group, topics.all_status())]
        self.session_expiry_s = session_expiry_s
        self.beat_s = beat_s
        self.subscribed = threading.Event()
        self._stop = threading.Event()
        self._queue: "queue.Queue[Optional[_Message]]" = queue.Queue()
        self._generation = 0
        self._pending_subs: set[int] = set()
        self._link: Optional[ServerLink] = None
        self._threads: list[threading.Thread] = []
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5,
                             manual_ack=True)
        if self.address.username:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            import ssl

            client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    # paho's network thread ------------------------------------------------------------------------------------

    def _on_connect(self, client, _userdata, flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            log.error("the broker at %s:%d refused ingest (%s); trying again", self.address.host, self.address.port,
                      reason_code)
            return
        self._generation += 1
        log.info("ingest connected to %s:%d as %s (session %s)", self.address.host, self.address.port,
                 self.client_id, "resumed" if flags.session_present else "new")
        # Subscribing again on a resumed session covers a session the broker lost. Retained statuses come only
        # with a new subscription: a restart does not make the broker resend every device's status.
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        _rc, mid = client.subscribe([(f, options) for f in self.filters])
        self._pending_subs.add(mid)
        self._queue.put(_Message("flush", "", {}, b"", 0, 0, self._generation, self.services.clock()))

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        self.subscribed.clear()
        if not self._stop.is_set():
            log.warning("ingest lost the broker (%s); reconnecting with back-off", reason_code)

    def _on_subscribe(self, _client, _userdata, mid, reason_codes, _properties) -> None:
        self._pending_subs.discard(mid)
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            log.error("the broker refused ingest's subscriptions %s: %s", self.filters, refused)
        elif not self._pending_subs:
            self.subscribed.set()

    def _on_message(self, client, _userdata, msg) -> None:
        try:
            parsed = topics.parse(msg.topic)
        except ValueError as exc:
            log.warning("ignored a message on %s: %s", msg.topic, exc)
            client.ack(msg.mid, msg.qos)
            return
        props = dict(getattr(msg.properties, "UserProperty", None) or [])
        # The retain flag is set only on a stored copy the broker sends because of a new subscription (Mosquitto
        # 2.0 sends them to shared subscriptions too); live messages, and those queued for this session, lack it.
        self._queue.put(_Message(parsed.kind, parsed.id, props, bytes(msg.payload), msg.mid, msg.qos,
                                 self._generation, self.services.clock(), bool(msg.retain)))

    # the worker thread ----------------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._handle(item)
            except Exception:  # logged with its traceback; the device sends unacked events again
                log.exception("ingest could not handle a %s message of %s", item.kind, item.device)
            if item.kind != "flush" and item.generation == self._generation:
                # A PUBACK for a message of an earlier connection would name a packet id the broker reuses.
                self._client.ack(item.mid, item.qos)
            if self._queue.empty():
                self._flush()

    def _handle(self, item: _Message) -> None:
        if item.kind == "events":
            try:
                store_batch(self.services, item.device, item.properties, item.payload, item.received_at)
            except SQLAlchemyError:
                log.exception("events of %s (epoch %s, seq %s) not stored: database error; not acked, the device "
                              "sends them again", item.device, item.properties.get("epoch"),
                              item.properties.get("seq"))
        elif item.kind == "status":
            store_status(self.services, item.device, item.payload, item.received_at, retained_copy=item.retained)

    def _flush(self) -> None:
        try:
            if self._link is None:
                self._link = ServerLink(self.address, "ingest-acks").connect()
            retained.flush(self.services, self._link)
        except (BrokerUnavailable, RuntimeError, ValueError, OSError) as exc:
            log.warning("acks wait for the broker (%s); sent on reconnect or by the worker", exc)
            self._close_link()

    def _close_link(self) -> None:
        if self._link is not None:
            link, self._link = self._link, None
            link.close()

    def _beat(self) -> None:
        from server.worker import beat

        while True:
            try:
                beat(self.services, "ingest")
            except Exception:  # logged; the next beat tries again
                log.exception("ingest heartbeat failed; trying again in %.0f s", self.beat_s)
            if self._stop.wait(self.beat_s):
                return

    # lifecycle --------------------------------------------------------------------------------------------------

    def start(self) -> "Ingest":
        """Start connecting (retried with back-off until the broker answers), the worker and the heartbeat."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        self._client.connect_async(self.address.host, self.address.port, keepalive=30, clean_start=False,
                                   properties=props)
        self._client.loop_start()
        self._threads = [threading.Thread(target=self._work, name="ingest-store", daemon=True),
                         threading.Thread(target=self._beat, name="ingest-beat", daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the message in hand, then disconnect; what is still queued is delivered again next session."""
        self._stop.set()
        while True:  # drop what the worker has not started: unacked, so the broker keeps it for the session
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout)
        self._client.disconnect()
        self._client.loop_stop()
        self._close_link()

    def run(self) -> None:
        """Run until SIGTERM or SIGINT."""

        def request_stop(signum, _frame) -> None:
            log.info("received %s; stopping", signal.Signals(signum).name)
            self._stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        self.start()
        try:
            while not self._stop.wait(1.0):
                pass
        finally:
            self.stop()
