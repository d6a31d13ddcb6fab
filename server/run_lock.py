"""The run lock: one ``lessoncast run`` per instance, held for as long as that supervisor lives.

A lock file in the data directory, flocked by the supervisor and holding its pid. The kernel drops the lock when
the process dies however it dies (even SIGKILL), so a stale file never blocks a restart, and the children do not
inherit it (Python opens files close-on-exec).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Optional, TextIO


class AlreadyRunning(Exception):
    """Another ``lessoncast run`` holds this instance; ``pid`` is its process id when the lock file names it."""

    def __init__(self, path: Path, pid: Optional[int]):
        super().__init__(f"{path} is held by pid {pid}")
        self.path = path
        self.pid = pid


def lock_path(data: Path) -> Path:
    """Where the run lock of the instance in DATA lives."""
    return data / "run" / "lessoncast.lock"


class RunLock:
    """The run lock of one instance, taken with ``acquire`` and released when this process exits."""

    def __init__(self, data: Path):
        self.path = lock_path(data)
        self._handle: Optional[TextIO] = None

    def acquire(self) -> "RunLock":
        """Take the lock, or raise AlreadyRunning naming the holder."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            text = handle.read().strip()
            handle.close()
            raise AlreadyRunning(self.path, int(text) if text.isdigit() else None) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        """Let go of the lock (the process's exit does the same)."""
        if self._handle is not None:
            self._handle.truncate(0)
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def holder(data: Path) -> Optional[int]:
    """The pid of the ``lessoncast run`` holding the instance in DATA, or None when none runs."""
    path = lock_path(data)
    if not path.exists():
        return None
    with open(path, "r", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = handle.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None
