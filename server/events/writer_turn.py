"""Turns at SQLite's write lock for ingest's writers, handed over at once instead of by polling.

SQLite has one write lock per database, and a writer that finds it taken polls: its busy handler sleeps 1, 2, 5,
10, ... up to 100 ms between tries. Two ingest processes whose store threads write one group after another spent a
fifth or more of the lock's time with it free while the waiting one slept (BENCHMARKS.md, event ingest). So
ingest's store threads first take an exclusive ``flock`` on a file beside the database: the kernel wakes the next
one the moment the turn ends, and by then SQLite's lock is free too. (The ack flusher's small transaction polls
like any writer: waiting in line behind whole groups delayed acks, and the devices then waited for them.)

The rest of lessoncast (the web server, the worker) polls. So that it is never starved while ingest writes without a
break, each turn ends with the write lock left free for a share of the time the turn held it (``FREE_SHARE``).

PostgreSQL has no database-wide write lock (rows are locked), so there turns cost nothing and wait for nothing.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

# After a turn that held SQLite's write lock for d seconds, the lock stays free for FREE_SHARE * d (at least
# MIN_FREE_S) before the next ingest writer may take it: a writer that polls finds it free at least that share of
# its tries even if ingest had work without a break (a busy handler tries about 150 times in its 15 s). 1/8 cost
# ingest a tenth of its events; at 1/32 another process's write during a full-speed bench waited 34 ms (median).
FREE_SHARE = 1 / 32
MIN_FREE_S = 0.0005


class WriterTurns:
    """Turns at the database's write lock, shared by every process that opens the same PATH (and by the threads of
    one process: each turn holds a thread lock too, since one open file's flock is shared by its threads)."""

    def __init__(self, path: Optional[Path], monotonic=time.monotonic, sleep=time.sleep):
        self.path = path
        self._monotonic, self._sleep = monotonic, sleep
        self._threads = threading.Lock()
        self._file = None

    @classmethod
    def for_services(cls, services) -> "WriterTurns":
        """Turns beside the services' SQLite database; none (a no-op) on PostgreSQL."""
        if services.db.engine.dialect.name != "sqlite":
            return cls(None)
        return cls(services.data / "ingest-writer.lock")

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the turn for the block (which should be one write transaction)."""
        if self.path is None:
            yield
            return
        with self._threads:
            if self._file is None:  # private, like everything in the data folder
                self._file = os.fdopen(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a")
            fcntl.flock(self._file, fcntl.LOCK_EX)
            try:
                started = self._monotonic()
                yield
                self._sleep(max(MIN_FREE_S, FREE_SHARE * (self._monotonic() - started)))
            finally:
                fcntl.flock(self._file, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._threads:
            if self._file is not None:
                self._file.close()
                self._file = None
