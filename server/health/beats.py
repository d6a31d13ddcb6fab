"""Heartbeats of the long-running processes (worker, ingest), written so /healthz can tell busy from down.

A beat used to be one row in the database, written from the loop that also did the work: a worker waiting on a
slow housekeeping round, or an ingest whose beat queued behind SQLite's write lock while it stored a flood, went
silent and /healthz called it down although it was working hard. Now each process beats from a thread of its own
that does nothing else, and the beat goes first to a small file under ``<data>/run/beats/`` (no lock to wait for),
then to the ``process_beats`` row (which processes on other hosts use, with PostgreSQL). The file also carries the
process's state: ``idle`` or ``busy``, how much work waits and when it last finished some, so /healthz says "busy"
for a process that works and "stalled" for one that holds work and finishes none.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Optional

from server.db import upsert_insert
from server.health.models import ProcessBeat

log = logging.getLogger(__name__)

BEAT_S = 5.0
SILENCE_S = 30.0  # no beat for this long: the process is down
STALL_S = 120.0  # work waiting and none finished for this long: the process is stalled


def beat_dir(services) -> Path:
    """Where this instance's processes leave their beats."""
    return services.data / "run" / "beats"


def write_file_beat(services, name: str, state: dict[str, Any]) -> Path:
    """Replace this process's beat file with NAME, pid, host, the time and STATE; return its path."""
    folder = beat_dir(services)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    host, pid = socket.gethostname(), os.getpid()
    path = folder / f"{name}-{host}-{pid}.json"
    body = json.dumps({"name": name, "pid": pid, "host": host, "seen_at": services.clock().isoformat(), **state})
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(body)
    os.replace(tmp, path)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def read_file_beats(services, name: str) -> list[dict[str, Any]]:
    """The beats of processes NAME on this host that are still running, newest first."""
    folder = beat_dir(services)
    if not folder.is_dir():
        return []
    host = socket.gethostname()
    beats = []
    for path in folder.glob(f"{name}-*.json"):
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
            body["seen_at"] = datetime.fromisoformat(body["seen_at"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being replaced, or not ours
        if body.get("host") == host and not _alive(int(body.get("pid", 0))):
            path.unlink(missing_ok=True)  # a process that died without removing its beat
            continue
        beats.append(body)
    return sorted(beats, key=lambda b: b["seen_at"], reverse=True)


def beat(services, name: str) -> None:
    """Record that the process NAME is alive now."""
    now = services.clock()
    values = {"name": name, "pid": os.getpid(), "host": socket.gethostname(), "seen_at": now}
    stmt = upsert_insert(services.db.engine)(ProcessBeat).values(**values)
    stmt = stmt.on_conflict_do_update(index_elements=["name"], set_={k: values[k] for k in ("pid", "host", "seen_at")})
    with services.db.session() as session:
        session.execute(stmt)


class Beater:
    """A thread that beats for process NAME every BEAT_S seconds with the state STATE() gives, until stopped."""

    def __init__(self, services, name: str, state: Callable[[], dict[str, Any]], beat_s: float = BEAT_S):
        self.services = services
        self.name = name
        self.state = state
        self.beat_s = beat_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._path: Optional[Path] = None

    def start(self) -> "Beater":
        """Start beating (at once, then every BEAT_S): the file from one thread, the database row from another,
        so a database that makes the row wait never delays the file."""
        self._threads = [threading.Thread(target=self._files, name=f"{self.name}-beat", daemon=True),
                         threading.Thread(target=self._rows, name=f"{self.name}-beat-db", daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def _files(self) -> None:
        while True:
            try:
                self._path = write_file_beat(self.services, self.name, self.state())
            except Exception:  # logged; the next beat tries again
                log.exception("%s could not write its heartbeat file; trying again in %.0f s", self.name, self.beat_s)
            if self._stop.wait(self.beat_s):
                return

    def _rows(self) -> None:
        while True:
            try:
                beat(self.services, self.name)
            except Exception:  # the database may be busy: the file beat already tells /healthz
                log.warning("%s could not record its heartbeat in the database; trying again in %.0f s", self.name,
                            self.beat_s, exc_info=True)
            if self._stop.wait(self.beat_s):
                return

    def stop(self, timeout: float = 5.0) -> None:
        """Stop beating and remove the beat file (a process that stops is not down, it is gone)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        if self._path is not None:
            self._path.unlink(missing_ok=True)


def clock_from_monotonic(services, monotonic_at: Optional[float], monotonic_now: float) -> Optional[str]:
    """The wall-clock time (ISO) of a monotonic MONOTONIC_AT, given MONOTONIC_NOW: beats carry wall times."""
    if monotonic_at is None:
        return None
    return (services.clock() - timedelta(seconds=monotonic_now - monotonic_at)).isoformat()
