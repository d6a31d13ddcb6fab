"""Participation reports kept for pages read far more often than the data changes (the console's attendance
dashboard, which shows a period and the four quarters of its year), shared by the web and worker processes.

A kept report is the very ``Report`` that ``server.attendance.reports.participation`` returned, stored in the data
directory (``reports/``) with a **fingerprint of the data that can change it**, derived from a few small reads
(``Marks``, read once per page or refresh round, not once per report):

- the organisation and staff part, the same for every report: the newest audit entry (every staff edit of sessions,
  attendees, members, sites, programmes and radios is audited), and the size and newest row of the member, site,
  township, group, programme and radio-holder tables;
- the part ingest moves: the change marks of the county days up to the report's window's end (its period's, or its
  year's when the report carries the year's home-visit list; every day for a programme), as their count and the
  sum of their versions (``server.attendance.marks``). Every writer of the aggregates moves, in its own
  transaction, the mark of each county day whose figures it changed: the day a lesson coverage row became (or
  stayed, with new clock flags) complete, the day a class session started (or got attendees), a broadcast day. A
  mark counts for every window ending on or after its day: a completion counts on the first day a member completed
  a lesson, so an earlier completion can move a later period too, and a session or broadcast day moves a later
  window too, which costs one needless computation of that window and never a missed change. A rebuild moves
  the sentinel day 0001-01-01, which every window reaches. Versions only grow and marks are never deleted, so
  (count, sum) moves with every change up to the window's end.

So a past quarter's report (drawn without the year's list: ``year_list=False``) keeps its fingerprint while today's
plays arrive, and is not computed again; the current period's report moves with every batch that changes its
figures (a completion, a class, a broadcast; a play that completes nothing moves no mark).

Reading: a kept report whose fingerprint equals the data's is current, and is served as of now. A kept report whose
fingerprint moved is served, marked with the time its figures were read (the page says "data as of HH:MM"), while it
is younger than ``LESSONCAST_REPORT_MAX_AGE``: the worker refreshes every kept report whose data moved, at most once
every ``LESSONCAST_REPORT_REFRESH`` seconds (``refresh``), so such a report is a few seconds old. Older, or when no
report is kept yet, the request computes it once; the worker keeps the reports of a dashboard opened without a
choice (this quarter and its year's quarters, of the county and each township) computed ahead (``warm``), so that
wait is the worker's cold start, not a reader's. The numbers on the page, in the CSV and in the XLSX stay the same
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

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.attendance import marks as day_marks, reports
from server.attendance.rules import Period, Rules, parse_period, quarter, year
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


@dataclasses.dataclass(frozen=True)
class Marks:
    """What every report's fingerprint is derived from, read at once: the organisation and staff part (SHARED) and
    the change marks of the county days (DAYS, (day, version) by day)."""

    shared: tuple
    days: tuple


def read_marks(session: Session) -> Marks:
    """The organisation and staff part and every day's change mark: two small queries, whatever the events."""
    columns = [select(func.max(c)).scalar_subquery() for c in _NEWEST]
    columns += [select(func.count()).select_from(m).scalar_subquery() for m in _COUNTED]
    return Marks(tuple(session.execute(select(*columns)).one()), day_marks.read(session))


def fingerprint(session: Session, period: Period, rules: Rules, *, year_list: bool = True,
                marks: Optional[Marks] = None) -> tuple:
    """What a participation report of PERIOD depends on (see the module's docstring), from MARKS (read now when not
    given)."""
    marks = marks if marks is not None else read_marks(session)
    _first, last = window(period, rules, year_list=year_list)
    return (*marks.shared, *day_marks.up_to(marks.days, last))


def current_quarter(today: date) -> str:
    """The quarter TODAY falls in, as a period (2026-Q4): what the dashboard shows when none is asked for."""
    return f"{today.year}-Q{(today.month - 1) // 3 + 1}"


def dashboard_reports(period: str, today: date) -> list[tuple[str, bool]]:
    """The reports a dashboard of PERIOD reads on TODAY, as (period, year_list): the period with the year's
    home-visit list, and each quarter of its year begun by the period's end and by today, without it (none for a
    programme)."""
    wanted = [(period, True)]
    try:
        last = min(parse_period(period).end, today)
    except ValueError:
        return wanted
    return wanted + [(quarter(last.year, q).label, False) for q in range(1, 5) if quarter(last.year, q).start <= last]


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

    def __init__(self, directory: Path, size: int = 128):
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
        """The keys of every kept report (a file this process read already, unchanged since, is not read again)."""
        with self._lock:
            known = {self._path(key): (stamp, key) for key, (stamp, _key, _kept) in self._memo.items()}
        found = []
        for path in self.directory.glob("*.pickle"):
            try:
                memo = known.get(path)
                if memo is not None and memo[0] == path.stat().st_mtime_ns:
                    found.append(memo[1])
                    continue
                found.append(pickle.loads(path.read_bytes())[0])
            except (OSError, EOFError, pickle.UnpicklingError, AttributeError, TypeError, ValueError, IndexError):
                continue
        return found


def compute(store: ReportStore, session: Session, period: str, rules: Rules, *, township: Optional[str],
            now: datetime, year_list: bool = True) -> Kept:
    """Compute the report, keep it and return it."""
    p, _programme = reports.resolve_period(session, period, rules)
    mark = fingerprint(session, p, rules, year_list=year_list)  # read now: what the report is computed from
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

    def __init__(self, directory: Path, size: int = 128):
        self.store = ReportStore(directory, size)

    def participation(self, session: Session, period: str, rules: Rules, *, township: Optional[str], now: datetime,
                      year_list: bool = True, max_age: float = 0.0, marks: Optional[Marks] = None) -> Kept:
        """``reports.participation`` of PERIOD (and TOWNSHIP; without the year's home-visit list unless YEAR_LIST):
        the kept one, as of now while its fingerprint holds, as of when it was read while it is younger than MAX_AGE
        seconds (the worker is refreshing it), else computed here. MARKS: ``read_marks`` as the page read them once
        for all its reports (read here when not given)."""
        p, _programme = reports.resolve_period(session, period, rules)
        key = (period, township, year_list)
        kept = self.store.get(key)
        if kept is not None:
            if kept.mark == fingerprint(session, p, rules, year_list=year_list, marks=marks):
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
    with services.db.session() as session:
        marks = read_marks(session)
    # The county's first (the dashboard's first page), then each township's.
    for key in sorted(store.keys(), key=lambda k: (k[1] is not None, str(k[1]), str(k[0]), k[2])):
        period, township, year_list = key
        kept = store.get(key)
        with services.db.session() as session:
            try:
                p, _programme = reports.resolve_period(session, period, services.rules)
                if kept is not None and kept.mark == fingerprint(session, p, services.rules, year_list=year_list,
                                                                 marks=marks):
                    continue
                compute(store, session, period, services.rules, township=township, now=services.clock(),
                        year_list=year_list)
            except Exception:  # a period or township that is gone: forget it
                log.exception("could not refresh the kept report %s", key)
                store._path(key).unlink(missing_ok=True)
                continue
        done.append(key)
    return done


def warm(services, store: Optional[ReportStore] = None, *, limit: int = 2) -> list[tuple]:
    """Compute, LIMIT at a time (the worker's round does other work too), the reports a dashboard opened without a
    choice reads (this quarter's, with the year's list, and its year's quarters) for the county and then each
    township, when they are not kept: so no one waits for a page's first view in normal running. As many as
    leave a quarter of the store for the periods people choose. Returns the keys computed."""
    store = store or store_of(services)
    today = services.today()
    with services.db.session() as session:
        townships = [None, *session.scalars(select(Township.code).order_by(Township.code))]
    wanted = [(period, township, year_list) for township in townships
              for period, year_list in dashboard_reports(current_quarter(today), today)]
    done = []
    for key in wanted[:store.size * 3 // 4]:
        if len(done) >= limit:
            break
        if store.get(key) is not None:
            continue
        period, township, year_list = key
        with services.db.session() as session:
            compute(store, session, period, services.rules, township=township, now=services.clock(),
                    year_list=year_list)
        done.append(key)
    return done
