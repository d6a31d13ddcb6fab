"""When each API token was last used, recorded off the request path.

Writing ``api_tokens.last_used_at`` inside every authenticated request made each read a write: on SQLite it waited
for the one write lock behind ingest's commits (reads took 2-15 s, and some ended in "database is locked", a 500).
A request now only notes the use in memory; a background thread writes the notes, at most one a minute per token,
and keeps them for the next round when the database is busy. What a process had not written yet when it stops is
lost: the column says roughly when a token was last used, not each use.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timedelta
from typing import Callable, Optional

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError

from server.accounts.models import ApiToken
from server.db import Database

log = logging.getLogger(__name__)

EVERY_S = 60.0


class TokenUse:
    """Notes of token uses, written by one thread per process every EVERY_S seconds."""

    def __init__(self, db: Database, clock: Callable[[], datetime], every_s: float = EVERY_S):
        self.db = db
        self.clock = clock
        self.every_s = every_s
        self._pending: dict[int, datetime] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._pid: Optional[int] = None

    def seen(self, token_id: int, last_written: Optional[datetime]) -> None:
        """Note that TOKEN_ID was used now; LAST_WRITTEN is its stored last_used_at (None: never). No I/O."""
        now = self.clock()
        if last_written is not None and now - last_written < timedelta(seconds=self.every_s):
            return
        with self._lock:
            self._pending[token_id] = now
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        # Started on first use, and again in a forked child (a gunicorn worker), which inherits no threads.
        if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="token-use", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.every_s)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Write the noted uses now; return how many tokens were written. Kept for next time if the database
        refuses (busy or down)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return 0
        try:
            with self.db.session() as session:
                for token_id, at in pending.items():
                    session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=at))
        except SQLAlchemyError as exc:
            log.warning("could not record when %d API token(s) were last used (%s); trying again in %.0f s",
                        len(pending), exc, self.every_s)
            with self._lock:
                for token_id, at in pending.items():
                    self._pending.setdefault(token_id, at)
            return 0
        return len(pending)

    def flush_soon(self) -> None:
        """Ask the thread to write now (tests, shutdown)."""
        self._wake.set()
