"""Ingest's two-stage pipeline and its turns at SQLite's write lock (server/events/ingest_loop.py,
server/events/writer_turn.py).

Nothing here depends on how fast the machine is: a stage is held by an event the test controls, and every wait polls
with a deadline. A check that something has *not* happened yet can only pass wrongly, never fail wrongly.
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import func, select

from server.events import ingest as ingest_mod
from server.events import writer_turn
from server.events.ingest_loop import Ingest, _Message
from server.events.models import DeviceEvent, QuarantinedBatch
from server.events.writer_turn import WriterTurns
from tests.server.test_ingest_paths import T0, T_ENROL, _batch, _count, _event, _props

OLD_GENERATION = -1  # messages of no connection: the store thread sends the broker no PUBACK for them


def _wait(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _stored(services) -> int:
    with services.db.session() as session:
        return session.scalar(select(func.count()).select_from(DeviceEvent))


def _message(device: str, seq: int, mid: int) -> _Message:
    return _Message("events", device, _props(device, seq, seq), _batch(device, [_event(seq)]), mid, 1,
                    OLD_GENERATION, T0)


@pytest.fixture
def loop(services, enrolled):
    """An Ingest whose prepare and store threads run (no broker: the test puts messages into its queue), and two
    enrolled radios."""
    services.clock = lambda: T_ENROL
    radios = [enrolled("radio", name=f"radio {i}")["device"] for i in range(2)]
    ingest = Ingest(services, client_id="lessoncast-ingest-pipeline")
    threads = [threading.Thread(target=ingest._prepare, daemon=True), threading.Thread(target=ingest._work,
                                                                                        daemon=True)]
    for thread in threads:
        thread.start()
    yield ingest, radios
    ingest._queue.close()
    for thread in threads:
        thread.join(30)
    ingest._turns.close()


def test_the_next_group_is_prepared_while_the_one_before_is_written(services, loop, monkeypatch):
    ingest, (first, second) = loop
    prepared, writing, release = [], threading.Event(), threading.Event()
    real_prepare, real_write = ingest_mod.prepare_batches, ingest_mod.write_batches

    def prepare_batches(svc, batches, lookups):
        prepared.append([b.device for b in batches])
        return real_prepare(svc, batches, lookups)

    def write_batches(svc, group, lookups):
        writing.set()
        assert release.wait(30), "the test never let the write finish"
        return real_write(svc, group, lookups)

    monkeypatch.setattr(ingest_mod, "prepare_batches", prepare_batches)
    monkeypatch.setattr(ingest_mod, "write_batches", write_batches)
    ingest._queue.put(_message(first, 1, 1))
    assert writing.wait(30)  # the first group is being written, and stays so until released
    ingest._queue.put(_message(second, 1, 2))
    _wait(lambda: len(prepared) == 2, "the second group to be prepared while the first is written")
    assert prepared == [[first], [second]] and _stored(services) == 0
    release.set()
    _wait(lambda: _stored(services) == 2, "both groups to be stored")
    _wait(lambda: ingest.in_hand == 0, "nothing left in hand")


def test_a_batch_that_cannot_be_prepared_is_quarantined_and_its_group_stored(services, loop, monkeypatch):
    ingest, (poisoned, good) = loop
    real_prepare = ingest_mod.prepare_batches

    def prepare_batches(svc, batches, lookups):
        if any(b.device == poisoned for b in batches):
            raise OverflowError("a bug one batch trips over")
        return real_prepare(svc, batches, lookups)

    monkeypatch.setattr(ingest_mod, "prepare_batches", prepare_batches)
    ingest._queue.put(_message(poisoned, 1, 1))
    ingest._queue.put(_message(good, 1, 2))
    _wait(lambda: _stored(services) == 1, "the good batch stored")
    _wait(lambda: _count(services, QuarantinedBatch, device_uid=poisoned) == 1, "the poisoned batch quarantined")
    with services.db.session() as session:
        assert session.scalar(select(DeviceEvent.device_uid)) == good


def test_ingest_writes_only_in_its_turn(services, loop):
    ingest, (first, _second) = loop
    lock_path = services.data / "ingest-writer.lock"
    with open(lock_path, "a") as held:  # another ingest process's turn, as the kernel sees it
        fcntl.flock(held, fcntl.LOCK_EX)
        ingest._queue.put(_message(first, 1, 1))
        _wait(lambda: ingest.in_hand == 1 and ingest._handoff.empty(), "the batch prepared and handed over")
        time.sleep(0.3)
        assert _stored(services) == 0, "ingest wrote while another writer had the turn"
        fcntl.flock(held, fcntl.LOCK_UN)
    _wait(lambda: _stored(services) == 1, "the batch stored once the turn was free")


# --- the turns themselves ---------------------------------------------------------------------------------------


class _Clock:
    def __init__(self):
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def test_a_turn_leaves_the_lock_free_for_a_share_of_what_it_held(tmp_path):
    clock = _Clock()
    turns = WriterTurns(tmp_path / "ingest-writer.lock", clock.monotonic, clock.sleep)
    with turns.turn():
        clock.now += 0.8  # a group written in 0.8 s
    with turns.turn():
        clock.now += 0.001
    turns.close()
    assert clock.slept == [pytest.approx(0.8 * writer_turn.FREE_SHARE),
                           pytest.approx(writer_turn.MIN_FREE_S)]
    assert (tmp_path / "ingest-writer.lock").stat().st_mode & 0o077 == 0, "the lock file is private"


def test_a_failed_turn_frees_the_lock_at_once(tmp_path):
    clock = _Clock()
    turns = WriterTurns(tmp_path / "ingest-writer.lock", clock.monotonic, clock.sleep)
    with pytest.raises(RuntimeError):
        with turns.turn():
            raise RuntimeError("the transaction failed")
    with open(tmp_path / "ingest-writer.lock", "a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if the failed turn had kept it
    assert clock.slept == []
    turns.close()


def test_turns_exclude_another_process_until_it_lets_go(tmp_path):
    path, go = tmp_path / "ingest-writer.lock", tmp_path / "go"
    holder = subprocess.Popen([sys.executable, "-c", f"""
import pathlib, time
from server.events.writer_turn import WriterTurns
turns = WriterTurns(pathlib.Path({str(path)!r}))
with turns.turn():
    print("holding", flush=True)
    while not pathlib.Path({str(go)!r}).exists():
        time.sleep(0.01)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        entered = threading.Event()

        def take() -> None:
            with WriterTurns(path).turn():
                entered.set()

        thread = threading.Thread(target=take, daemon=True)
        thread.start()
        assert not entered.wait(0.3), "a turn was taken while another process held it"
        go.touch()
        assert entered.wait(30), "the turn never came once the other process let go"
        thread.join(30)
    finally:
        holder.wait(30)


def test_on_postgresql_turns_take_no_lock(tmp_path):
    turns = WriterTurns(None)
    with turns.turn():
        pass
    assert list(tmp_path.iterdir()) == []
