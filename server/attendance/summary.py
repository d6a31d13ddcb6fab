"""Participation reports kept for pages read far more often than the data changes (the console's attendance
dashboard, which shows a period and the four quarters of its year), shared by the web and worker processes.

A kept report is the very ``Report`` that ``server.attendance.reports.participation`` returned, stored in the data
directory (``reports/``) with a **fingerprint of the data that can change it**:

- the organisation and staff part, the same for every report: the newest audit entry (every staff edit of sessions,
  attendees, members, sites, programmes and radios is audited), and the size and newest row of the member, site,
  township, group, programme and radio-holder tables;
- the part ingest moves, read only within the report's own data window (its period, and its year when the report
  carries the year's home-visit list): the class sessions started and broadcast days in the window with their
  attendees, and the lesson coverage rows completed by the window's end (a completion counts on the first day a
  member completed a lesson, so an earlier completion can move a later period too; rows completed after the window
  cannot). Each part is a row count, the newest id and sums of what ingest updates in place (events folded into a
  row, class flags, clock flags, removals), so a new or updated row in the window moves it, and a rebuild (which
  deletes and rewrites the rows) moves every window.

So a past quarter's report (drawn without the year's list: ``year_list=False``) keeps its fingerprint while today's
plays arrive, and is not computed again; the current period's report moves with every batch.

Reading: a kept report whose fingerprint equals the data's is current, and is served as of now. A kept report whose
fingerprint moved is served, marked with the time its figures were read (the page says "data as of HH:MM"), while it
is younger than ``LESSONCAST_REPORT_MAX_AGE``: the worker refreshes every kept report whose data moved, at most once
every ``LESSONCAST_REPORT_REFRESH`` seconds (``refresh``), so such a report is a few seconds old. Older, or when no
report is kept yet, the request computes it once. The numbers on the page, in the CSV and in the XLSX stay the same
function's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import pickle
import tempfile
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Callable, Optional

from sqlalchemy import Integer, cast, func, select
from sqlalchemy.orm import Session

from server.attendance import reports
from server.attendance.models import BroadcastDay, ClassSession, LessonCoverage, SessionAttendee
from server.attendance.rules import Period, Rules, year
from server.audit import AuditEntry
from server.devices.models import DeviceAssignment
from server.org.models import GroupLink, Member, Site, Township
from server.programmes.models import Programme, ProgrammeItem

log = logging.getLogger(__name__)

_NEWEST = (AuditEntry.id, Member.id, Member.updated_at, Site.id, Township.id, GroupLink.id, DeviceAssignment.id,
           Programme.id, ProgrammeItem.id)
_COUNTED = (Member, Site, GroupLink, DeviceAssignment, Programme, ProgrammeItem)

# Called with (period, township, year_list) each time a report is computed (tests count computations with it).
on_compute: list[Callable[[str, Optional[str], bool], None]] = []


def window(period: Period, rules: Rules, *, year_list: bool) -> tuple[Optional[date], Optional[date]]:
    """The days whose data a report of PERIOD reads: the period, and its year with the home-visit list; (None,
    None) for a programme (its completions count whenever they happened)."""
    if period.kind == "programme":
        return None, None
    if not year_list or period.kind == "year":
        return period.start, period.end
    this_year = year(period.end.year)
    return min(period.start, this_year.start), max(period.end, this_year.end)


def fingerprint(session: Session, period: Period, rules: Rules, *, year_list: bool = True) -> tuple:
    """What a participation report of PERIOD depends on (see the module's docstring)."""
    first, last = window(period, rules, year_list=year_list)
    zone = rules.zone
    start = datetime.combine(first, datetime.min.time(), zone) if first else None
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), zone) if last else None

    def within(column, lo, hi):
        return [c for c in ((column >= lo) if lo is not None else None,
                            (column < hi) if hi is not None else None) if c is not None]

    coverage = within(LessonCoverage.completed_at, None, end) or [LessonCoverage.completed_at.is_not(None)]
    sessions = within(ClassSession.started_at, start, end)
    days = [c for c in ((BroadcastDay.day >= first) if first else None, (BroadcastDay.day <= last) if last else None)
            if c is not None]
    columns = [select(func.max(c)).scalar_subquery() for c in _NEWEST]
    columns += [select(func.count()).select_from(m).scalar_subquery() for m in _COUNTED]
    parts = [select(*columns),
             select(func.count(), func.max(LessonCoverage.id), func.sum(LessonCoverage.events),
                    func.sum(LessonCoverage.clock_flagged)).where(*coverage),
             select(func.count(), func.max(ClassSession.id), func.sum(cast(ClassSession.is_class, Integer)),
                    func.sum(ClassSession.clock_flagged)).where(*sessions),
             select(func.count(), func.max(SessionAttendee.id), func.sum(cast(SessionAttendee.removed, Integer)))
             .join(ClassSession, ClassSession.key == SessionAttendee.session_key).where(*sessions),
             select(func.count(), func.max(BroadcastDay.id)).where(*days)]
    return tuple(value for part in parts for value in session.execute(part).one())


@dataclasses.dataclass(frozen=True)
class Kept:
    """A report, the fingerprint it was computed under and when its figures were read (``as_of``: now when the
    fingerprint still holds); CURRENT: nothing it is computed from has changed since."""

    mark: tuple
    as_of: datetime
    report: reports.Report
    current: bool = True


class ReportStore:
    """Kept reports as files in DIRECTORY (one per period, township and kind), written atomically, the SIZE most
    recently written kept; each process keeps the last file it read in memory until the file changes."""

    def __init__(self, directory: Path, size: int = 64):
        self.directory, self.size = Path(directory), size
        self._lock = threading.Lock()
        self._memo: dict[tuple, tuple[int, tuple, Kept]] = {}

    def _path(self, key: tuple) -> Path:
        return self.directory / (hashlib.sha256(repr(key).encode()).hexdigest()[:32] + ".pickle")

    def get(self, key: tuple) -> Optional[Kept]:
        path = self._path(key)
        try:
            stamp = path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        with self._lock:
            memo = self._memo.get(key)
            if memo is not None and memo[0] == stamp:
                return memo[2]
        try:
            stored_key, kept = pickle.loads(path.read_bytes())
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, TypeError, ValueError):
            return None  # half-gone or from another version: computed again
        if stored_key != key:
            return None
        with self._lock:
            self._memo[key] = (stamp, key, kept)
        return kept

    def put(self, key: tuple, kept: Kept) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            out.write(pickle.dumps((key, kept), protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, self._path(key))
        files = sorted(self.directory.glob("*.pickle"), key=lambda p: p.stat().st_mtime_ns)
        for old in files[:max(0, len(files) - self.size)]:
            old.unlink(missing_ok=True)

    def keys(self) -> list[tuple]:
        """The keys of every kept report."""
        found = []
        for path in self.directory.glob("*.pickle"):
            try:
                found.append(pickle.loads(path.read_bytes())[0])
            except (OSError, EOFError, pickle.UnpicklingError, AttributeError, TypeError, ValueError, IndexError):
                continue
        return found


def compute(store: ReportStore, session: Session, period: str, rules: Rules, *, township: Optional[str],
            now: datetime, year_list: bool = True) -> Kept:
    """Compute the report, keep it and return it."""
    p, _programme = reports.resolve_period(session, period, rules)
    mark = fingerprint(session, p, rules, year_list=year_list)
    for hook in on_compute:
        hook(period, township, year_list)
    report = reports.participation(session, period, rules, township=township, now=now)
    if not year_list:
        report = dataclasses.replace(report, untrained_this_year=[])
    kept = Kept(mark, now, report)
    store.put((period, township, year_list), kept)
    return kept


class ReportCache:
    """The console's way to the kept reports of one data directory."""

    def __init__(self, directory: Path, size: int = 64):
        self.store = ReportStore(directory, size)

    def participation(self, session: Session, period: str, rules: Rules, *, township: Optional[str], now: datetime,
                      year_list: bool = True, max_age: float = 0.0) -> Kept:
        """``reports.participation`` of PERIOD (and TOWNSHIP; without the year's home-visit list unless YEAR_LIST):
        the kept one, as of now while its fingerprint holds, as of when it was read while it is younger than MAX_AGE
        seconds (the worker is refreshing it), else computed here."""
        p, _programme = reports.resolve_period(session, period, rules)
        key = (period, township, year_list)
        kept = self.store.get(key)
        if kept is not None:
            if kept.mark == fingerprint(session, p, rules, year_list=year_list):
                return Kept(kept.mark, now, dataclasses.replace(kept.report, generated_at=now))
            if now - kept.as_of <= timedelta(seconds=max_age):
                return dataclasses.replace(kept, current=False)
        return compute(self.store, session, period, rules, township=township, now=now, year_list=year_list)


def store_of(services) -> ReportStore:
    return ReportStore(services.data / "reports")


_last_refresh = [float("-inf")]


def refresh(services, store: Optional[ReportStore] = None, *, force: bool = False) -> list[tuple]:
    """Compute again every kept report whose data moved (the worker's housekeeping round, at most once every
    ``report_refresh`` seconds unless FORCE); returns the keys computed."""
    if not force and time.monotonic() - _last_refresh[0] < services.settings.report_refresh:
        return []
    _last_refresh[0] = time.monotonic()
    store = store or store_of(services)
    done = []
    for key in store.keys():
        period, township, year_list = key
        kept = store.get(key)
        with services.db.session() as session:
            try:
                p, _programme = reports.resolve_period(session, period, services.rules)
                if kept is not None and kept.mark == fingerprint(session, p, services.rules, year_list=year_list):
                    continue
                compute(store, session, period, services.rules, township=township, now=services.clock(),
                        year_list=year_list)
            except Exception:  # a period or township that is gone: forget it
                log.exception("could not refresh the kept report %s", key)
                store._path(key).unlink(missing_ok=True)
                continue
        done.append(key)
    return done
