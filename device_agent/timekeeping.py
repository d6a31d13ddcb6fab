"""Trusted time on a device whose clock may be wrong, behind a network that may lie about the time.

Three sources, trusted differently:

- the **trusted floor**: times the county signed, so nobody on the path can forge them (the ``issued_at`` of every
  verified manifest), and the enrolment answer's Date. It only moves forward and is a hard lower bound: a Pi without an RTC that boots into 1970 never
  goes below it.
- the **device clock**, counted on from the trusted floor with the monotonic clock when it is below it.
- the HTTP **Date header**, which any mirror or proxy can forge. It sets the clock offset (events record raw time,
  offset and corrected time) and a *soft* floor that carries a clockless device over a reboot, but it is believed
  only up to ``DATE_LEAD`` past what the device can vouch for itself, or past the expiry of the timestamp metadata it
  verified last. When a sync finds that fresh signed metadata, expired by the Date-corrected time, verifies by the
  device's own time, the Date was wrong: ``refute`` drops the offset and the soft floor, and Date headers that far
  ahead are ignored until the agent restarts. So a forged Date can shift the time by a bounded amount for a while,
  and never freeze a device.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Optional

log = logging.getLogger(__name__)
FLOOR_FILE = "timefloor.json"
PERSIST_STEP = timedelta(minutes=10)
# How far an unauthenticated Date header may put the time past the later of what the device vouches for and the
# expiry of its verified timestamp metadata. A device that synced within the metadata's lifetime and then lost its
# clock still takes the true time; a forged Date gets at most this far.
DATE_LEAD = timedelta(days=1)
REFUTE_MARGIN = timedelta(hours=1)  # a Date this much closer to the device's own time than a refuted one is heard


def _parse(value: Optional[str]) -> Optional[datetime]:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def _read_time(saved: dict, key: str) -> Optional[datetime]:
    try:
        return datetime.fromisoformat(saved[key]) if saved.get(key) else None
    except (TypeError, ValueError):
        return None


def record_enrolment_time(store, date_header: Optional[str]) -> None:
    """Start the trusted floor at the enrolment answer's Date: enrolment is the one exchange whose channel the device
    trusts (it brings the root of trust), so its time is trusted as far as that root is."""
    enrolled = _parse(date_header)
    if enrolled is None:
        return
    saved = store.read_json(FLOOR_FILE) or {}
    trusted = _read_time(saved, "trusted_floor")
    if trusted is None or enrolled > trusted:
        store.write_json(FLOOR_FILE, {**saved, "trusted_floor": enrolled.isoformat()})


class TimeKeeper:
    """Corrected time from the device clock, the signed floor, and Date headers believed within bounds."""

    def __init__(self, clock, store, *, signed_expiry: Optional[datetime] = None):
        self.clock = clock
        self.store = store
        saved = store.read_json(FLOOR_FILE) or {}
        self.offset: Optional[float] = saved.get("offset")
        self.trusted = _read_time(saved, "trusted_floor")  # signed times only
        # The soft floor from Date headers. An older agent kept every Date here as a hard floor, so a device a
        # forged Date froze recovers: the value is bounded and refutable like any other Date.
        self.floor = _read_time(saved, "floor")
        self.signed_expiry = signed_expiry  # of the timestamp metadata verified last
        self._saved = (self.trusted, self.floor)
        start = clock.monotonic()
        self._trusted_anchor = self._anchor = start  # when each floor was set: time keeps moving past it
        self._refuted_lead: Optional[timedelta] = None

    # -- what the device learns ----------------------------------------------------------------------------------
    def observe_date_header(self, value: Optional[str]) -> None:
        """Learn the server offset (and the soft floor) from an HTTP Date header seen just now, within bounds."""
        server = _parse(value)
        if server is None:
            return
        own = self.authentic()
        if self._refuted_lead is not None and server - own >= self._refuted_lead - REFUTE_MARGIN:
            return  # as far ahead as a Date the signed metadata already proved wrong
        ceiling = self.ceiling()
        if server > ceiling:
            log.warning("the Date header %s is past what the device can check (%s): believing it only that far",
                        value, ceiling.isoformat(timespec="seconds"))
            server = ceiling
        self.offset = (server - self.clock.now()).total_seconds()
        if self.floor is None or server > self.floor:
            self.floor, self._anchor = server, self.clock.monotonic()
        self._maybe_save()

    def observe_signed(self, *, issued_at: Optional[datetime] = None, expires: Optional[datetime] = None) -> None:
        """Learn from metadata that just verified: the time the county signed it (a lower bound on now nobody on the
        path can forge) and when the timestamp metadata expires (how far a Date header is believed)."""
        if expires is not None:
            self.signed_expiry = expires
        if issued_at is not None and (self.trusted is None or issued_at > self.trusted):
            self.trusted, self._trusted_anchor = issued_at, self.clock.monotonic()
        self._maybe_save()

    def refute(self, dated: datetime, verified_at: datetime) -> None:
        """Signed metadata expired by DATED (from Date headers) verified at VERIFIED_AT (the device's own time):
        forget the offset and the soft floor, and ignore Date headers as far ahead until the agent restarts."""
        log.warning("a Date header put the time at %s, but the county's signed metadata verifies at the device's own "
                    "time %s: ignoring Date headers that far ahead", dated.isoformat(timespec="seconds"),
                    verified_at.isoformat(timespec="seconds"))
        self._refuted_lead = max(dated - verified_at, REFUTE_MARGIN * 2)
        self.offset, self.floor = None, None
        self.save()

    # -- persistence ---------------------------------------------------------------------------------------------
    def _maybe_save(self) -> None:
        saved_trusted, saved_floor = self._saved
        moved = [(new, old) for new, old in ((self.trusted, saved_trusted), (self.floor, saved_floor))
                 if new is not None]
        if any(old is None or new - old >= PERSIST_STEP for new, old in moved):
            self.save()

    def save(self) -> None:
        """Persist the floors and the offset."""
        self.store.write_json(FLOOR_FILE, {"trusted_floor": self.trusted.isoformat() if self.trusted else None,
                                           "floor": self.floor.isoformat() if self.floor else None,
                                           "offset": self.offset})
        self._saved = (self.trusted, self.floor)

    # -- what the device believes --------------------------------------------------------------------------------
    def _count_on(self, floor: datetime, anchor: float) -> datetime:
        return floor + timedelta(seconds=max(0.0, self.clock.monotonic() - anchor))

    def authentic(self) -> datetime:
        """The time without any Date header: the device clock, or, when it is below the signed floor, the floor
        counted on with the monotonic clock."""
        raw = self.clock.now()
        if self.trusted is not None and raw < self.trusted:
            return self._count_on(self.trusted, self._trusted_anchor)
        return raw

    def ceiling(self) -> datetime:
        """The latest time a Date header is believed to: DATE_LEAD past the device's own time or past the expiry of
        its verified timestamp metadata, whichever is later."""
        own = self.authentic()
        return max(own, self.signed_expiry or own) + DATE_LEAD

    def clock_wrong(self) -> bool:
        """Whether the raw device clock is below a floor (reset RTC, dead battery)."""
        floors = [f for f in (self.trusted, self.floor) if f is not None]
        return bool(floors) and self.clock.now() < max(floors) - timedelta(minutes=5)

    def now(self) -> datetime:
        """The best estimate of true UTC time: device clock plus offset, never below a floor, never past the
        ceiling."""
        raw = self.clock.now()
        corrected = raw + timedelta(seconds=self.offset) if self.offset is not None else raw
        for floor, anchor in ((self.floor, self._anchor), (self.trusted, self._trusted_anchor)):
            if floor is not None and corrected < floor:
                # The clock is behind what we know: count on from the floor with the monotonic clock.
                corrected = self._count_on(floor, anchor)
        return min(corrected, self.ceiling())  # the Date may pull the time back (a clock ahead), not below a floor
