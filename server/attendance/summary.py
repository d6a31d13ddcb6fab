"""Participation reports kept for pages read far more often than the data changes (the console's attendance
dashboard, which shows a period and the four quarters of its year).

A kept report is the very ``Report`` that ``server.attendance.reports.participation`` returned, stored with a
fingerprint of everything that function reads: the newest stored event (ingest folds every event into the
aggregates in the same transaction, so new plays always move it), the newest audit entry (every staff edit of
sessions, attendees, members, sites, programmes and radios is audited), and the size and newest row of each
aggregate and organisation table (a rebuild deletes and rewrites the aggregates, so their newest ids move). A
request reads the fingerprint (a handful of indexed MAX and COUNT lookups) and gets the kept report only when it
is unchanged; otherwise the report is computed again. So a kept report can never show other numbers than a fresh
one, and the numbers on the page, in the CSV and in the XLSX stay the same function's.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from datetime import date, datetime
from typing import Optional

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.attendance import reports
from server.attendance.models import BroadcastDay, ClassSession, LessonCoverage, SessionAttendee
from server.attendance.rules import Rules
from server.audit import AuditEntry
from server.devices.models import DeviceAssignment
from server.events.models import DeviceEvent
from server.org.models import GroupLink, Member, Site, Township
from server.programmes.models import Programme, ProgrammeItem

_NEWEST = (DeviceEvent.id, AuditEntry.id, LessonCoverage.id, ClassSession.id, SessionAttendee.id, BroadcastDay.id,
           Member.id, Member.updated_at, Site.id, Township.id, GroupLink.id, DeviceAssignment.id, Programme.id,
           ProgrammeItem.id)
_COUNTED = (LessonCoverage, ClassSession, SessionAttendee, BroadcastDay, Member, Site, GroupLink, DeviceAssignment,
            Programme, ProgrammeItem)


def fingerprint(session: Session, today: date) -> tuple:
    """What a participation report depends on, in one query: newest rows, table sizes, and TODAY (the trend)."""
    columns = [select(func.max(c)).scalar_subquery() for c in _NEWEST]
    columns += [select(func.count()).select_from(m).scalar_subquery() for m in _COUNTED]
    return (today, *session.execute(select(*columns)).one())


class ReportCache:
    """The last SIZE participation reports asked for, by (period, township), each with its fingerprint."""

    def __init__(self, size: int = 64):
        self.size = size
        self._lock = threading.Lock()
        self._kept: OrderedDict[tuple, tuple[tuple, reports.Report]] = OrderedDict()

    def participation(self, session: Session, period: str, rules: Rules, *, township: Optional[str], now: datetime,
                      today: date, mark: Optional[tuple] = None) -> reports.Report:
        """``reports.participation`` of PERIOD (and TOWNSHIP), kept while the fingerprint (MARK, when the caller
        already read it) stays the same; its ``generated_at`` is NOW either way."""
        mark = mark if mark is not None else fingerprint(session, today)
        key = (period, township)
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and kept[0] == mark:
                self._kept.move_to_end(key)
                return dataclasses.replace(kept[1], generated_at=now)
        report = reports.participation(session, period, rules, township=township, now=now)
        with self._lock:
            self._kept[key] = (mark, report)
            self._kept.move_to_end(key)
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)
        return report
