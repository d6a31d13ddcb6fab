"""Trusted time on a device whose clock may be wrong.

The server's HTTP ``Date`` header gives the offset between server and device time; events record both the raw and
the corrected time. A persisted *time floor*, the latest trusted time seen, is never gone below: a Pi without an RTC
that boots into 1970 must not make expired metadata look fresh or date plays decades ago.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Optional

FLOOR_FILE = "timefloor.json"
PERSIST_STEP = timedelta(minutes=10)


class TimeKeeper:
    """Corrected time from the device clock, the last server offset and the persisted floor."""

    def __init__(self, clock, store):
        self.clock = clock
        self.store = store
        saved = store.read_json(FLOOR_FILE) or {}
        self.offset: Optional[float] = saved.get("offset")
        self.floor = datetime.fromisoformat(saved["floor"]) if saved.get("floor") else None
        self._saved_floor = self.floor
        self._anchor = clock.monotonic()  # when the floor was last set: time keeps moving past it

    def observe_date_header(self, value: Optional[str]) -> None:
        """Learn the server offset (and raise the floor) from an HTTP Date header seen just now."""
        if not value:
            return
        try:
            server = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return
        if server.tzinfo is None:
            server = server.replace(tzinfo=timezone.utc)
        self.offset = (server - self.clock.now()).total_seconds()
        self.raise_floor(server)

    def raise_floor(self, trusted: datetime) -> None:
        """Never accept a time below TRUSTED again; persisted now and then (the floor only moves forward)."""
        if self.floor is None or trusted > self.floor:
            self.floor = trusted
            self._anchor = self.clock.monotonic()
        if self._saved_floor is None or self.floor - self._saved_floor >= PERSIST_STEP:
            self.save()

    def save(self) -> None:
        """Persist the floor and offset."""
        self.store.write_json(FLOOR_FILE, {"floor": self.floor.isoformat() if self.floor else None,
                                           "offset": self.offset})
        self._saved_floor = self.floor

    def clock_wrong(self) -> bool:
        """Whether the raw device clock is below the floor (reset RTC, dead battery)."""
        return self.floor is not None and self.clock.now() < self.floor - timedelta(minutes=5)

    def now(self) -> datetime:
        """The best estimate of true UTC time: device clock plus offset, never below the floor."""
        raw = self.clock.now()
        corrected = raw + timedelta(seconds=self.offset) if self.offset is not None else raw
        if self.floor is not None and corrected < self.floor:
            # The clock is behind what we know to be true: count on from the floor with the monotonic clock.
            return self.floor + timedelta(seconds=max(0.0, self.clock.monotonic() - self._anchor))
        return corrected
