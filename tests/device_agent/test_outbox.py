"""The event outbox: gap-free numbering that survives reopening and SIGKILL, forward-only acks, and compaction."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from device_agent.outbox import Outbox, OutboxFull

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 10, 3, 11, 0, tzinfo=timezone.utc)
SHA = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"


class FixedClock:
    """A clock that moves one second per reading."""

    def __init__(self):
        self.moment = T0

    def now(self) -> datetime:
        self.moment += timedelta(seconds=1)
        return self.moment


def play(phase: str, play_id: str = "p1", start: float = 0.0, end: float = 10.0, **extra) -> dict:
    return {"type": "play", "phase": phase, "play_id": play_id, "programme": "2026-Q4", "lesson": 41,
            "sha256": SHA, "start_position": start, "end_position": end, "listened_seconds": end - start,
            "muted": False, "volume": 7, "trigger": "key", **extra}


def checkin(n: int) -> dict:
    return {"type": "checkin", "method": "card", "credential": f"card-{n}"}


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite", clock=FixedClock())
    yield box
    box.close()


def seqs(events: list[dict]) -> list[int]:
    return [e["seq"] for e in events]


def covered(events: list[dict]) -> list[tuple[int, int]]:
    return sorted((e["epoch"], n) for e in events for n in range(e["seq"], e.get("seq_last", e["seq"]) + 1))


def test_record_returns_the_committed_event_with_id_seq_and_epoch(outbox):
    event = outbox.record(checkin(1))
    assert event["seq"] == 1 and event["epoch"] == 1 and len(event["id"]) == 36
    assert event["device_time"] == "2026-10-03T11:00:01Z"
    assert outbox.pending() == [event]
    assert outbox.depth() == 1


def test_the_file_is_a_write_ahead_log_database(outbox):
    outbox.record(checkin(1))
    with sqlite3.connect(outbox.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_record_refuses_events_that_carry_fields_the_outbox_assigns(outbox):
    with pytest.raises(ValueError, match="'seq' is assigned by the outbox"):
        outbox.record({"type": "checkin", "seq": 4})
    with pytest.raises(ValueError, match="event type"):
        outbox.record({"method": "card"})
    assert outbox.depth() == 0


def test_numbering_has_no_gaps_across_close_and_reopen(tmp_path):
    path = tmp_path / "outbox.sqlite"
    for round_ in range(3):
        box = Outbox(path, clock=FixedClock())
        for n in range(4):
            box.record(checkin(n))
        box.close()
    box = Outbox(path)
    events = box.pending()
    assert seqs(events) == list(range(1, 13))
    assert len({e["id"] for e in events}) == 12
    assert box.depth() == 12
    box.close()


def test_ack_deletes_what_it_covers_and_only_moves_forward(outbox):
    outbox.record_many([checkin(n) for n in range(10)])
    assert outbox.ack(1, 4) == 4
    assert seqs(outbox.pending()) == list(range(5, 11))
    assert outbox.ack(1, 3) == 0  # an older retained ack arriving late
    assert outbox.ack(1, 4) == 0
    assert outbox.acked(1) == 4
    assert outbox.ack(1, 10) == 6
    assert outbox.depth() == 0 and outbox.acked(1) == 10
    # Numbering continues after everything is acked and deleted.
    assert outbox.record(checkin(99))["seq"] == 11


@pytest.mark.parametrize("epoch, seq, why", [
    (2, 3, "an epoch the outbox never numbered in"),
    (0, 3, "an epoch the outbox never numbered in"),
    (1, 11, "beyond the last seq issued: another outbox life's ack"),
])
def test_acks_that_do_not_belong_to_this_outbox_are_ignored(outbox, epoch, seq, why):
    outbox.record_many([checkin(n) for n in range(10)])
    assert outbox.ack(epoch, seq) == 0, why
    assert outbox.depth() == 10 and outbox.acked(1) == 0


def test_a_new_epoch_restarts_numbering_and_old_events_stay_deliverable(outbox):
    outbox.record_many([checkin(n) for n in range(3)])
    outbox.ack(1, 1)
    assert outbox.set_epoch(2) is True
    assert outbox.epoch == 2
    fresh = outbox.record(checkin(10))
    assert (fresh["epoch"], fresh["seq"]) == (2, 1)
    assert [(e["epoch"], e["seq"]) for e in outbox.pending()] == [(1, 2), (1, 3), (2, 1)]
    # The next batch is the old epoch's, under its own number, and its ack is still honoured.
    epoch, first, last, events = outbox.batch(100)
    assert (epoch, first, last, seqs(events)) == (1, 2, 3, [2, 3])
    assert outbox.ack(1, 3) == 2
    assert outbox.batch(100)[:3] == (2, 1, 1)
    # Now the old epoch is empty and not current: its acks are ignored.
    assert outbox.ack(1, 3) == 0


def test_epochs_only_move_forward(outbox):
    outbox.set_epoch(3)
    assert outbox.set_epoch(3) is False
    with pytest.raises(ValueError, match="epoch: 2 is behind the outbox's epoch 3"):
        outbox.set_epoch(2)
    assert outbox.epoch == 3


def test_batch_of_an_empty_outbox(outbox):
    assert outbox.batch(10) == (1, 0, 0, [])


def test_it_holds_a_hundred_thousand_events(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite", clock=FixedClock())
    for chunk in range(10):
        box.record_many(play("progress", f"p{chunk}", n, n + 1.0) for n in range(10_000))
    assert box.depth() == 100_000
    assert box.compactions == 0
    epoch, first, last, events = box.batch(500)
    assert (epoch, first, last) == (1, 1, 500) and seqs(events) == list(range(1, 501))
    assert box.ack(1, 99_990) == 99_990
    assert seqs(box.pending()) == list(range(99_991, 100_001))
    box.close()
    box = Outbox(tmp_path / "outbox.sqlite")
    assert box.depth() == 10 and box.record(checkin(1))["seq"] == 100_001
    box.close()


def test_compaction_at_capacity_keeps_the_ack_contiguous_and_every_other_event(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite", capacity=50, clock=FixedClock())
    rng = random.Random(7)
    recorded = []
    handed_out: list[tuple[int, int]] = []  # (first, last) of every batch published
    in_flight = None
    for n in range(400):
        r = rng.random()
        if r < 0.08:
            event = checkin(n)
        elif r < 0.12:
            event = play(rng.choice(["started", "completed", "stopped", "skipped"]), f"p{n // 40}")
        else:
            event = play("progress", f"p{n // 40}", float(n), n + 1.0, muted=(n % 40 == 0))
        recorded.append(box.record(event))
        if n % 90 == 60:  # a short connection: one batch goes out...
            _, first, last, _ = box.batch(20)
            handed_out.append((first, last))
            in_flight = last
        if n % 90 == 89 and in_flight:  # ...and its ack arrives later, after more plays (and compactions)
            box.ack(1, in_flight)
    assert box.compacted and box.compactions >= 1
    pending = box.pending(limit=-1)
    acked = box.acked(1)
    assert box.depth() == len(pending) <= 50
    # Every unacked seq is covered exactly once, by an event or a summary's [seq, seq_last].
    assert covered(pending) == [(1, n) for n in range(acked + 1, 401)]
    # No event that is not a progress event was dropped.
    not_progress = [e["id"] for e in recorded[acked:] if e.get("phase") not in ("progress",)]
    assert not_progress == [e["id"] for e in pending if e.get("phase") not in ("progress", "summary")]
    summaries = [e for e in pending if e.get("phase") == "summary"]
    assert summaries
    # No summary swallows an event already handed out: the server would count those seconds twice.
    assert not [s for s in summaries for first, last in handed_out if s["seq"] <= last and s["seq_last"] >= first]
    for s in summaries:
        replaced = [e for e in recorded if s["seq"] <= e["seq"] <= s["seq_last"]]
        assert {e["play_id"] for e in replaced} == {s["play_id"]}
        assert s["start_position"] == min(e["start_position"] for e in replaced)
        assert s["end_position"] == max(e["end_position"] for e in replaced)
        assert s["listened_seconds"] == pytest.approx(sum(e["listened_seconds"] for e in replaced))
        assert s["muted"] is all(e["muted"] for e in replaced)
        assert s["replaced"] == len(replaced)
        assert (s["programme"], s["lesson"], s["sha256"], s["volume"]) == ("2026-Q4", 41, SHA, 7)
    # A batch reports the summary's range, so the server's ack can cover it.
    epoch, first, last, events = box.batch(1000)
    assert (first, last) == (pending[0]["seq"], pending[-1].get("seq_last", pending[-1]["seq"]))
    assert box.ack(1, last) == len(events) and box.depth() == 0
    box.close()


def test_compaction_merges_a_muted_run_into_a_muted_summary(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite", capacity=4, clock=FixedClock())
    box.record_many(play("progress", "p1", n, n + 1.0, muted=True) for n in range(4))
    summary_and_next = box.record(checkin(1))
    assert summary_and_next["seq"] == 5
    pending = box.pending()
    assert [(e["seq"], e.get("seq_last"), e["phase"] if "phase" in e else e["type"]) for e in pending] == [
        (1, 4, "summary"), (5, None, "checkin")]
    assert pending[0]["muted"] is True and pending[0]["listened_seconds"] == 4.0
    assert box.compactions == 1
    box.close()
    assert Outbox(tmp_path / "outbox.sqlite").compactions == 1


def test_a_full_outbox_with_nothing_to_compact_refuses_rather_than_drops(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite", capacity=5, clock=FixedClock())
    box.record_many([checkin(1), play("started"), play("progress", "p1"), checkin(2), play("progress", "p1")])
    with pytest.raises(OutboxFull, match="capacity of 5 and none can be compacted"):
        box.record(checkin(3))
    # The refused event took no number: the next one recorded after an ack gets 6.
    assert seqs(box.pending()) == [1, 2, 3, 4, 5]
    box.ack(1, 1)
    assert box.record(checkin(3))["seq"] == 6
    box.close()


def test_a_burst_that_does_not_fit_is_recorded_not_at_all(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite", capacity=3, clock=FixedClock())
    with pytest.raises(OutboxFull):
        box.record_many([checkin(n) for n in range(5)])
    assert box.depth() == 0 and box.record(checkin(1))["seq"] == 1
    box.close()


_CHILD = """
import sys
from pathlib import Path
from device_agent.outbox import Outbox
box = Outbox(Path(sys.argv[1]))
n = 0
while True:
    event = box.record({"type": "play", "phase": "progress", "play_id": "p", "start_position": n,
                        "end_position": n + 1, "listened_seconds": 1, "muted": False})
    print(event["seq"], event["id"], flush=True)
    n += 1
"""


def test_sigkill_at_a_random_instant_never_leaves_a_gap_a_duplicate_or_a_lost_event(tmp_path):
    path = tmp_path / "outbox.sqlite"
    rng = random.Random(2026)
    confirmed: dict[int, str] = {}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(5):
        child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE, text=True,
                                 env=env, cwd=ROOT)
        first = child.stdout.readline()  # blocks until the child has committed its first event
        assert first, "the child recorded nothing"
        time.sleep(rng.uniform(0.0, 0.3))  # the random instant of the "power cut"
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=10)
        assert child.returncode == -signal.SIGKILL
        for line in [first, *out.splitlines()]:
            parts = line.split()
            # The kill can cut the child's last print short: only whole lines confirm an event.
            if len(parts) == 2 and len(parts[1]) == 36:
                confirmed[int(parts[0])] = parts[1]
    box = Outbox(path)
    events = box.pending(limit=-1)
    assert seqs(events) == list(range(1, len(events) + 1))
    assert len({e["id"] for e in events}) == len(events)
    # Every event whose record() returned is there, under the seq and id it was given.
    by_seq = {e["seq"]: e["id"] for e in events}
    assert all(by_seq.get(seq) == event_id for seq, event_id in confirmed.items())
    assert box.record({"type": "checkin"})["seq"] == len(events) + 1
    box.close()


def test_export_writes_the_pending_events_as_json_lines_atomically(outbox, tmp_path):
    outbox.record_many([checkin(n) for n in range(5)])
    outbox.ack(1, 2)
    stick = tmp_path / "stick"
    stick.mkdir()
    target = stick / "events-r-cf24fc4f07.jsonl"
    target.write_text("previous export\n")
    assert outbox.export(target, "r-cf24fc4f07") == 3
    lines = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert lines[0] == {"device": "r-cf24fc4f07", "epoch": 1, "events": 3, "exported_at": "2026-10-03T11:00:06Z"}
    assert lines[1:] == outbox.pending()
    assert sorted(p.name for p in stick.iterdir()) == ["events-r-cf24fc4f07.jsonl"]  # no temporary file left


@pytest.mark.parametrize("hand_out", [lambda box: box.batch(2)[3], lambda box: box.pending(2)])
def test_events_handed_out_for_publishing_are_never_compacted(tmp_path, hand_out):
    box = Outbox(tmp_path / "outbox.sqlite", capacity=4, clock=FixedClock())
    box.record_many(play("progress", "p1", n, n + 1.0) for n in range(4))
    assert seqs(hand_out(box)) == [1, 2]
    box.close()
    box = Outbox(tmp_path / "outbox.sqlite", capacity=4, clock=FixedClock())  # the mark survives a restart
    box.record(checkin(1))
    assert [(e["seq"], e.get("seq_last")) for e in box.pending()] == [(1, None), (2, None), (3, 4), (5, None)]
    box.close()


def test_recording_on_one_thread_while_acking_on_another_keeps_the_depth_true(outbox):
    done = threading.Event()

    def acker():
        while not done.is_set():
            _, _, last, events = outbox.batch(7)
            if events:
                outbox.ack(1, last)

    thread = threading.Thread(target=acker)
    thread.start()
    try:
        outbox.record_many([checkin(n) for n in range(3)])
        for n in range(300):
            outbox.record(checkin(n))
    finally:
        done.set()
        thread.join(timeout=10)
    assert outbox.depth() == len(outbox.pending(limit=-1)) == 303 - outbox.acked(1)
