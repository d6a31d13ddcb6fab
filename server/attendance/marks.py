"""Change marks of county days (``attendance_marks``): what a kept participation report's fingerprint reads instead of
the aggregates themselves.

Every writer of what a participation report reads about a day (a lesson coverage row completed on it, a class
session started on it or its attendees, its broadcast) calls ``bump`` with the county days it changed, in its own
transaction, so the marks commit (or roll back) with the rows. A day's ``version`` only grows and rows are never
deleted, so the marks of the days up to a window's end, read as (row count, sum of versions), move whenever data
of that window changes, and stay put while only later days change (``summary.fingerprint``).
"""

from __future__ import annotations

from datetime import date
from typing import Iterable, Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.attendance.models import AttendanceMark
from server.db import upsert_insert

# Before every window's end: a rebuild moves it, so every report's fingerprint moves (the migration seeds it too).
SENTINEL_DAY = date(1, 1, 1)


def bump(session: Session, days: Iterable[date]) -> None:
    """Move the mark of each of DAYS (version + 1, a new day starting at 1), in SESSION's transaction: one statement
    whatever the number of days, in day order (one lock order, so two writers never deadlock on PostgreSQL). Call
    it as late as the transaction allows: on PostgreSQL each day's row stays locked until the commit."""
    rows = [{"day": day, "version": 1} for day in sorted(set(days))]
    if not rows:
        return
    insert = upsert_insert(session)
    table = AttendanceMark.__table__
    stmt = insert(table)
    session.connection().execute(
        stmt.on_conflict_do_update(index_elements=["day"], set_={"version": table.c.version + 1}), rows)


def read(session: Session) -> tuple[tuple[date, int], ...]:
    """Every (day, version), by day: a row per county day with data (a few hundred a year)."""
    return tuple((day, version) for day, version in session.execute(
        select(AttendanceMark.day, AttendanceMark.version).order_by(AttendanceMark.day)))


def up_to(marks: tuple[tuple[date, int], ...], last: Optional[date]) -> tuple[int, int]:
    """(count, sum of versions) of the MARKS of days up to LAST (every day when LAST is None)."""
    chosen = [version for day, version in marks if last is None or day <= last]
    return len(chosen), sum(chosen)
