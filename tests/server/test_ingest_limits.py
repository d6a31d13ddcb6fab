"""Ingest's defences against one device sending too much: the per-device queues (round-robin, allowance, backlog,
bytes held), the size caps on a batch and an event, and the ack's walk over a gap, which must cost nothing while a
device's seq 1 is missing.

The queue tests drive ``DeviceQueues`` with a fake clock; the storage tests use a real SQLite database.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest
from sqlalchemy import event, func, select

from server import settings as settings_mod
from server.events.ingest import Incoming, store_batches
from server.events.ingest_queue import DeviceQueues, Limits
from server.events.models import DeviceEvent, DeviceSequence, QuarantinedBatch

T0 = datetime(2026, 10, 3, 12, 0, 0, tzinfo=timezone.utc)
T_ENROL = datetime(2026, 9, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Msg:
    device: str
    payload: bytes
    n: int = 0


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _queues(rate=1000.0, burst=1000, backlog=1000, total_bytes=10**9):
    clock = Clock()
    return DeviceQueues(Limits(rate=rate, burst=burst, backlog=backlog, total_bytes=total_bytes), clock), clock


def test_devices_are_served_in_turn_not_in_arrival_order():
    queues, _ = _queues()
    for n in range(100):
        assert queues.put(Msg("flooder", b"x", n)) == []
    queues.put(Msg("good", b"x", 0))
    queues.put(Msg("good", b"x", 1))
    taken = queues.take(4, 10**6, timeout=0)
    assert [(m.device, m.n) for m in taken] == [("flooder", 0), ("good", 0), ("flooder", 1), ("good", 1)]
    # Each device's own order is kept.
    rest = queues.take(1000, 10**6, timeout=0)
    assert [m.n for m in rest] == list(range(2, 100))


def test_a_device_over_its_backlog_is_shed_and_the_others_are_not():
    queues, _ = _queues(backlog=3)
    shed = [m for n in range(10) for m in queues.put(Msg("flooder", b"x", n))]
    assert [m.n for m in shed] == [3, 4, 5, 6, 7, 8, 9]
    assert queues.put(Msg("good", b"x")) == []
    assert queues.shed_by_device() == {"flooder": 7}
    assert queues.held == 4


def test_a_device_past_its_burst_waits_for_its_rate_while_others_go_on():
    queues, clock = _queues(rate=2.0, burst=3)
    for n in range(10):
        queues.put(Msg("flooder", b"x", n))
    assert [m.n for m in queues.take(100, 10**6, timeout=0)] == [0, 1, 2]
    assert queues.take(100, 10**6, timeout=0) == []  # no tokens left
    queues.put(Msg("good", b"x"))
    assert [m.device for m in queues.take(100, 10**6, timeout=0)] == ["good"]
    clock.now += 1.0  # two tokens earned
    assert [m.n for m in queues.take(100, 10**6, timeout=0)] == [3, 4]


def test_over_the_bytes_held_the_device_holding_most_loses_its_newest():
    queues, _ = _queues(total_bytes=1000)
    for n in range(9):
        assert queues.put(Msg("flooder", b"x" * 100, n)) == []
    assert queues.put(Msg("good", b"y" * 100)) == []
    shed = queues.put(Msg("good2", b"z" * 100))
    assert [(m.device, m.n) for m in shed] == [("flooder", 8)]
    assert queues.held_bytes == 1000
    # A message of the device holding the most is itself the one shed.
    assert [m.device for m in queues.put(Msg("flooder", b"x" * 100, 99))] == ["flooder"]


def test_take_waits_for_a_message_and_close_ends_the_wait():
    import threading

    queues = DeviceQueues(Limits(rate=100.0, burst=10, backlog=10, total_bytes=10**6), __import__("time").monotonic)
    got = []
    thread = threading.Thread(target=lambda: got.append(queues.take(10, 10**6)))
    thread.start()
    queues.put(Msg("d", b"x"))
    thread.join(5)
    assert [m.device for m in got[0]] == ["d"]
    thread = threading.Thread(target=lambda: got.append(queues.take(10, 10**6)))
    thread.start()
    queues.close()
    thread.join(5)
    assert got[1] == [] and not thread.is_alive()


def test_drain_forgets_everything_waiting():
    queues, _ = _queues()
    for n in range(5):
        queues.put(Msg("d", b"xx", n))
    assert len(queues.drain()) == 5
    assert (queues.held, queues.held_bytes) == (0, 0)
    assert queues.take(10, 10**6, timeout=0) == []


# --- storage ----------------------------------------------------------------------------------------------------


def _event(seq: int, **extra) -> dict:
    return {"id": str(uuid.uuid4()), "seq": seq, "type": "note", **extra}


def _incoming(device: str, events: list[dict]) -> Incoming:
    first, last = events[0]["seq"], events[-1]["seq"]
    payload = json.dumps({"device": device, "epoch": 1, "events": events}).encode()
    return Incoming(device, {"device": device, "epoch": "1", "seq": f"{first}-{last}"}, payload, T0)


@pytest.fixture
def radio(services, enrolled):
    services.clock = lambda: T_ENROL
    return enrolled("radio")["device"]


def test_a_batch_over_the_size_cap_is_quarantined_truncated_and_counts_as_stored(services, radio):
    services.settings = settings_mod.load(environ={}, overrides={**dict(services.settings),
                                                                 "ingest_max_batch_bytes": 2000})
    big = _incoming(radio, [_event(s, note="x" * 300) for s in range(1, 11)])
    assert len(big.payload) > 2000
    [stored] = store_batches(services, [big])
    assert stored.quarantined and stored.acked == 10
    with services.db.session() as session:
        row = session.scalars(select(QuarantinedBatch)).one()
        assert "over the 2,000-byte limit" in row.reason and "LESSONCAST_INGEST_MAX_BATCH_BYTES" in row.reason
        assert len(row.payload) == 2000
        assert session.scalar(select(func.count()).select_from(DeviceEvent)) == 0


def test_a_batch_holding_an_event_over_the_event_cap_is_quarantined(services, radio):
    services.settings = settings_mod.load(environ={}, overrides={**dict(services.settings),
                                                                 "ingest_max_event_bytes": 500})
    batch = _incoming(radio, [_event(1), _event(2, note="长" * 200), _event(3)])  # 600 bytes of UTF-8
    [stored] = store_batches(services, [batch])
    assert stored.quarantined and stored.acked == 3
    with services.db.session() as session:
        reason = session.scalars(select(QuarantinedBatch.reason)).one()
    assert reason.startswith("batch.events[1]: ") and "500-byte limit" in reason


def test_a_missing_seq_1_costs_no_lookup_per_batch_and_its_arrival_acks_everything(services, radio):
    """A device that leaves out seq 1 made every later batch read all its stored events beyond the ack."""
    lookups: list[str] = []

    def record(_conn, _cursor, statement, _params, _context, _many):
        if statement.lstrip().upper().startswith("SELECT") and "seq >" in statement.replace('"', ""):
            lookups.append(statement)

    engine = services.db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        for first in range(2, 602, 10):
            [stored] = store_batches(services, [_incoming(radio, [_event(s) for s in range(first, first + 10)])])
            assert stored.acked == 0
        assert lookups == [], "a batch beyond the gap looked up the stored ranges"
        [stored] = store_batches(services, [_incoming(radio, [_event(1)])])
        assert stored.acked == 601
        # The walk over 600 stored events reads them a chunk at a time, not once per event.
        assert 1 <= len(lookups) <= 3
    finally:
        event.remove(engine, "before_cursor_execute", record)
    with services.db.session() as session:
        assert session.get(DeviceSequence, (radio, 1)).acked == 601


def test_the_walk_stops_at_the_next_gap_and_goes_on_when_it_is_filled(services, radio):
    def send(*seqs):
        return store_batches(services, [_incoming(radio, [_event(s) for s in seqs])])[0].acked

    assert send(3, 4) == 0
    assert send(7, 8) == 0
    assert send(1) == 1
    assert send(2) == 4  # walks over 3-4, stops at the gap before 7
    assert send(5) == 5
    assert send(6) == 8
