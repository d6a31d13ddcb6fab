"""The durable event outbox: every play, check-in and error is committed here before the agent acts on it.

One SQLite file in WAL mode with ``synchronous=FULL``, opened by one process. ``record`` assigns the event its UUID
and the next sequence number of the current epoch and commits both in one transaction before it returns, so a power
cut at any instant leaves the event either fully recorded or not at all: never a gap, never a reused number.

Events leave the outbox only when the server's ack covers them. Acks are contiguous ("every event 1..n of this epoch
is stored") so one number per epoch is the whole delivery state, and an older retained ack arriving late can never
make the device forget what it still has to send: the acked point only moves forward.

A radio may spend weeks offline. When the outbox reaches its capacity it compacts runs of "progress" play events of
one play into one "summary" event covering the same sequence range (``seq`` .. ``seq_last``), so acks stay
contiguous and attendance (the union of played positions) is unchanged. Only events never handed out by ``pending``,
``batch`` or ``export`` are compacted: a summary overlapping events the server may already hold would count those
seconds twice.
Nothing else is ever dropped: when nothing can be compacted, ``record`` raises ``OutboxFull``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from playlists.manifest import format_utc

SCHEMA_VERSION = 1
DEFAULT_CAPACITY = 100_000
ASSIGNED = ("id", "seq", "seq_last", "epoch")
"""Fields the outbox assigns; an event handed to ``record`` must not carry them."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    epoch       INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    seq_last    INTEGER NOT NULL,
    id          TEXT    NOT NULL UNIQUE,
    recorded_at TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    phase       TEXT,
    play_id     TEXT,
    body        TEXT    NOT NULL,
    PRIMARY KEY (epoch, seq),
    CHECK (seq >= 1 AND seq_last >= seq)
);
CREATE TABLE IF NOT EXISTS state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    epoch       INTEGER NOT NULL,
    compactions INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS epochs (
    epoch    INTEGER PRIMARY KEY,
    next_seq INTEGER NOT NULL,
    acked    INTEGER NOT NULL,
    sent     INTEGER NOT NULL DEFAULT 0
);
"""


class OutboxFull(Exception):
    """The outbox is at capacity and holds nothing it may compact; the message says how to make room."""


class _Clock(Protocol):
    def now(self) -> datetime: ...


class _SystemClock:
    """The device's wall clock, for callers that do not inject one."""

    def now(self) -> datetime:
        """Aware UTC wall time."""
        return datetime.now(timezone.utc)


class Outbox:
    """Durable, gap-free, ack-driven event queue in one SQLite file."""

    def __init__(self, path: Path, *, capacity: int = DEFAULT_CAPACITY, clock: _Clock | None = None):
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity: {capacity!r} is not a positive number of events")
        self.path = Path(path)
        self.capacity = capacity
        self._clock = clock if clock is not None else _SystemClock()
        # The agent records from its player thread and acks from the MQTT thread; one connection, one lock, so a
        # read never sees another thread's half-done transaction.
        self._lock = threading.RLock()
        self._depth = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: every transaction is an explicit BEGIN IMMEDIATE ... COMMIT below.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: the WAL is fsynced at every commit, so a committed event survives a power cut (NORMAL would not).
        self._db.execute("PRAGMA synchronous=FULL")
        with self._transaction():
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)
            self._db.execute("INSERT OR IGNORE INTO state (id, epoch, compactions) VALUES (1, 1, 0)")
            self._db.execute("INSERT OR IGNORE INTO epochs (epoch, next_seq, acked) VALUES (1, 1, 0)")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        # The depth is kept in memory (one process owns the file) so record does not count 100,000 rows each time.
        self._depth = self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]

    # ---- state -----------------------------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # The in-memory depth is updated inside the block and put back if the transaction does not commit.
        with self._lock:
            depth = self._depth
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                self._depth = depth
                raise

    def _one(self, sql: str, params: tuple = ()) -> Any:
        with self._lock:
            row = self._db.execute(sql, params).fetchone()
        return row[0] if row else None

    @property
    def epoch(self) -> int:
        """The sequence epoch new events are numbered in."""
        return self._one("SELECT epoch FROM state")

    @property
    def compactions(self) -> int:
        """How many times the outbox has had to compact progress events to make room (persisted)."""
        return self._one("SELECT compactions FROM state")

    @property
    def compacted(self) -> bool:
        """True once the outbox has ever compacted, so status can report that plays were summarised."""
        return self.compactions > 0

    def depth(self) -> int:
        """The number of unacked events (a summary counts as one)."""
        return self._depth

    def acked(self, epoch: int) -> int:
        """The acked point of epoch: every event 1..n of it is on the server (0 when nothing is acked)."""
        return self._one("SELECT acked FROM epochs WHERE epoch = ?", (epoch,)) or 0

    def set_epoch(self, n: int) -> bool:
        """Start numbering at 1 in epoch n (from re-enrolment); True if it moved, False if n is already current."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise ValueError(f"epoch: {n!r} is not an integer")
        with self._transaction() as db:
            current = db.execute("SELECT epoch FROM state").fetchone()[0]
            if n == current:
                return False
            if n < current:
                raise ValueError(f"epoch: {n} is behind the outbox's epoch {current} (epochs only move forward)")
            db.execute("INSERT INTO epochs (epoch, next_seq, acked) VALUES (?, 1, 0)", (n,))
            db.execute("UPDATE state SET epoch = ?", (n,))
        return True

    # ---- recording -------------------------------------------------------------------------------------------------

    def record(self, event: dict) -> dict:
        """Commit event with a new id and the next seq of the current epoch; returns the full recorded event."""
        return self.record_many([event])[0]

    def record_many(self, events: Iterable[dict]) -> list[dict]:
        """Commit a burst of events in one transaction (all or none); returns them as recorded, in order."""
        events = list(events)
        for event in events:
            _check_new(event)
        if not events:
            return []
        recorded: list[dict] = []
        with self._transaction() as db:
            epoch = db.execute("SELECT epoch FROM state").fetchone()[0]
            next_seq = db.execute("SELECT next_seq FROM epochs WHERE epoch = ?", (epoch,)).fetchone()[0]
            depth = self._depth
            for event in events:
                if depth >= self.capacity:
                    depth -= self._compact(db)
                    if depth >= self.capacity:
                        raise OutboxFull(
                            f"outbox {self.path.name}: {depth} unacked events reach its capacity of {self.capacity} "
                            "and none can be compacted; deliver them or export them to a sideload medium")
                now = self._clock.now()
                full = {**event, "id": str(uuid.uuid4()), "seq": next_seq, "epoch": epoch}
                full.setdefault("device_time", format_utc(now))
                self._insert(db, full, now)
                recorded.append(full)
                next_seq += 1
                depth += 1
            db.execute("UPDATE epochs SET next_seq = ? WHERE epoch = ?", (next_seq, epoch))
            self._depth = depth
        return recorded

    @staticmethod
    def _insert(db: sqlite3.Connection, event: dict, now: datetime) -> None:
        phase = event.get("phase")
        play_id = event.get("play_id")
        db.execute(
            "INSERT INTO events (epoch, seq, seq_last, id, recorded_at, kind, phase, play_id, body) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (event["epoch"], event["seq"], event.get("seq_last", event["seq"]), event["id"],
             now.astimezone(timezone.utc).isoformat(), event["type"],
             phase if isinstance(phase, str) else None, play_id if isinstance(play_id, str) else None,
             json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)))

    # ---- compaction ------------------------------------------------------------------------------------------------

    def _compact(self, db: sqlite3.Connection) -> int:
        """Merge every run of adjacent progress/summary events of one play into one summary; returns rows freed."""
        rows = db.execute(
            "SELECT e.epoch, e.seq, e.seq_last, e.play_id FROM events e JOIN epochs p ON p.epoch = e.epoch "
            "WHERE e.kind = 'play' AND e.phase IN ('progress', 'summary') AND e.play_id IS NOT NULL "
            "AND e.seq > p.sent ORDER BY e.epoch, e.seq").fetchall()
        freed = 0
        run: list[tuple[int, int, int, str]] = []
        for row in [*rows, None]:
            # Only candidates are listed and seqs have no gaps, so a hole between two rows is some other event
            # (a check-in, a started play) that the summary's range must not swallow.
            if (row is not None and run and row[0] == run[-1][0] and row[3] == run[-1][3]
                    and row[1] == run[-1][2] + 1):
                run.append(row)
                continue
            if len(run) >= 2:
                freed += self._merge(db, run)
            run = [row] if row is not None else []
        if freed:
            db.execute("UPDATE state SET compactions = compactions + 1")
        return freed

    def _merge(self, db: sqlite3.Connection, run: list[tuple[int, int, int, str]]) -> int:
        epoch, first, last = run[0][0], run[0][1], run[-1][2]
        bodies = [json.loads(b) for (b,) in db.execute(
            "SELECT body FROM events WHERE epoch = ? AND seq BETWEEN ? AND ? ORDER BY seq", (epoch, first, last))]
        recorded_at = db.execute("SELECT recorded_at FROM events WHERE epoch = ? AND seq = ?",
                                 (epoch, run[-1][1])).fetchone()[0]
        summary = summarise(bodies)
        summary.update(id=str(uuid.uuid4()), seq=first, seq_last=last, epoch=epoch)
        db.execute("DELETE FROM events WHERE epoch = ? AND seq BETWEEN ? AND ?", (epoch, first, last))
        self._insert(db, summary, datetime.fromisoformat(recorded_at))
        return len(run) - 1

    # ---- delivery --------------------------------------------------------------------------------------------------

    def pending(self, limit: int = 500) -> list[dict]:
        """Unacked events, oldest epoch first, then by seq; a summary carries its range as seq .. seq_last.

        What it returns counts as handed out (it may be published), so compaction leaves it alone.
        """
        with self._lock:
            rows = self._db.execute("SELECT epoch, seq_last, body FROM events ORDER BY epoch, seq LIMIT ?",
                                    (limit,)).fetchall()
            self._hand_out(rows)
        return [json.loads(body) for _, _, body in rows]

    def batch(self, limit: int = 500) -> tuple[int, int, int, list[dict]]:
        """The next batch to publish: (epoch, first seq, last seq_last, events), all of the oldest pending epoch.

        Like ``pending`` it marks the range as handed out, so compaction never merges it. With nothing pending it is
        ``(current epoch, 0, 0, [])``.
        """
        with self._lock:
            row = self._db.execute("SELECT epoch FROM events ORDER BY epoch, seq LIMIT 1").fetchone()
            if row is None:
                return self.epoch, 0, 0, []
            epoch = row[0]
            rows = self._db.execute("SELECT seq, seq_last, body FROM events WHERE epoch = ? ORDER BY seq LIMIT ?",
                                    (epoch, limit)).fetchall()
            self._hand_out([(epoch, rows[-1][1], None)])
        return epoch, rows[0][0], rows[-1][1], [json.loads(body) for _, _, body in rows]

    def _hand_out(self, rows: list[tuple[int, int, Any]]) -> None:
        """Raise the persisted "handed out" mark of each epoch to the highest seq_last in rows (epoch, seq_last, _)."""
        highest: dict[int, int] = {}
        for epoch, seq_last, _ in rows:
            highest[epoch] = max(seq_last, highest.get(epoch, 0))
        marks = dict(self._db.execute("SELECT epoch, sent FROM epochs").fetchall())
        raise_to = {e: s for e, s in highest.items() if s > marks.get(e, 0)}
        if raise_to:  # written only when it moves: a delivery loop polling pending() must not fsync every round
            with self._transaction() as db:
                for epoch, seq in raise_to.items():
                    self._mark_sent(db, epoch, seq)

    @staticmethod
    def _mark_sent(db: sqlite3.Connection, epoch: int, seq: int) -> None:
        db.execute("UPDATE epochs SET sent = MAX(sent, ?) WHERE epoch = ?", (seq, epoch))

    def ack(self, epoch: int, seq: int) -> int:
        """Apply the server's ack "epoch, every 1..seq stored"; returns how many events it deleted.

        Ignored (0): an epoch the outbox never numbered in, an old epoch with nothing left, an ack at or behind the
        acked point (a late retained ack), and an ack beyond the last seq issued (it belongs to another outbox life,
        and deleting on its word would lose events never sent).
        """
        if isinstance(epoch, bool) or not isinstance(epoch, int) or isinstance(seq, bool) or not isinstance(seq, int):
            raise ValueError(f"ack: epoch {epoch!r} and seq {seq!r} must be integers")
        with self._transaction() as db:
            row = db.execute("SELECT next_seq, acked FROM epochs WHERE epoch = ?", (epoch,)).fetchone()
            if row is None:
                return 0
            next_seq, acked = row
            current = db.execute("SELECT epoch FROM state").fetchone()[0]
            if epoch != current and db.execute("SELECT 1 FROM events WHERE epoch = ? LIMIT 1", (epoch,)).fetchone() \
                    is None:
                return 0
            if seq <= acked or seq >= next_seq:
                return 0
            deleted = db.execute("DELETE FROM events WHERE epoch = ? AND seq_last <= ?", (epoch, seq)).rowcount
            db.execute("UPDATE epochs SET acked = ? WHERE epoch = ?", (seq, epoch))
            self._mark_sent(db, epoch, seq)
            self._depth -= deleted
        return deleted

    def export(self, path: Path, device: str) -> int:
        """Write every pending event as JSON lines after a header line, atomically; returns the events written.

        The file is built beside its destination and renamed into place after an fsync, so a stick pulled out
        mid-write leaves the previous export or the new one, never a truncated file the server would half-import.
        """
        path = Path(path)
        # The server imports the file: from now on these events may be on it, so they are not compacted.
        events = self.pending(limit=-1)
        header = {"device": device, "epoch": self.epoch, "events": len(events),
                  "exported_at": format_utc(self._clock.now())}
        tmp = path.with_name(f".{path.name}.tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8", newline="\n") as out:
            for line in [header, *events]:
                out.write(json.dumps(line, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself must survive the stick being pulled
        finally:
            os.close(dir_fd)
        return len(events)

    def close(self) -> None:
        """Close the database file."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_new(event: Any) -> None:
    if not isinstance(event, dict):
        raise ValueError(f"event: {type(event).__name__} given, a dict expected")
    if not isinstance(event.get("type"), str) or not event["type"]:
        raise ValueError(f"event: {event.get('type')!r} is not an event type such as 'play'")
    assigned = [k for k in ASSIGNED if k in event]
    if assigned:
        raise ValueError(f"event: {assigned[0]!r} is assigned by the outbox; record a new event without it")


def summarise(events: list[dict]) -> dict:
    """One summary play event standing for progress/summary events of one play, oldest first (no id or seq yet)."""
    first, last = events[0], events[-1]
    summary = {k: v for k, v in first.items() if k not in ASSIGNED}
    summary["phase"] = "summary"
    for key in ("play_id", "programme", "lesson", "sha256"):
        if key in first:
            summary[key] = first[key]
    starts = [e["start_position"] for e in events if _is_number(e.get("start_position"))]
    ends = [e["end_position"] for e in events if _is_number(e.get("end_position"))]
    listened = [e["listened_seconds"] for e in events if _is_number(e.get("listened_seconds"))]
    if starts:
        summary["start_position"] = min(starts)
    if ends:
        summary["end_position"] = max(ends)
    if listened:
        summary["listened_seconds"] = sum(listened)
    summary["muted"] = all(e.get("muted") is True for e in events)
    volumes = [e["volume"] for e in events if "volume" in e]
    if volumes:
        summary["volume"] = volumes[-1]
    if "device_time" in last:
        summary["device_time"] = last["device_time"]
    # How many progress events the summary stands for, so the server can tell a summary of 3 from one of 3,000.
    summary["replaced"] = sum(e.get("replaced", 1) if e.get("phase") == "summary" else 1 for e in events)
    return summary


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
