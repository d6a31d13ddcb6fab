"""The change marks of county days (``server.attendance.marks``) that a kept report's fingerprint reads instead of the
aggregates: a play of today moves this quarter's fingerprint and not a closed quarter's; a late play moves the
quarter it is dated in; a rebuild moves every fingerprint; a staff edit moves its day's mark. And the worker keeps
the reports of a dashboard opened without a choice warm, so its first view computes nothing."""

from __future__ import annotations

from datetime import date, time

import pytest

from server.attendance import edit as attendance_edit, fold, marks, reports, summary
from server.attendance.summary import ReportCache
from tests.server.test_report_cache import QUARTERS, _county, _late_play, _new_play
from tests.server.test_reports import local, playing

pytestmark = pytest.mark.databases  # each test runs on SQLite and on PostgreSQL

ALL = [(q, False) for q in [*QUARTERS, "2026-Q4"]] + [("2026-Q4", True)]


def _fingerprints(services) -> dict[tuple[str, bool], tuple]:
    """Each dashboard report's fingerprint, and its day part alone (the marks of the days up to its window's end)."""
    with services.db.session() as session:
        read = summary.read_marks(session)
        out = {}
        for period, year_list in ALL:
            p, _programme = reports.resolve_period(session, period, services.rules)
            mark = summary.fingerprint(session, p, services.rules, year_list=year_list, marks=read)
            assert mark == summary.fingerprint(session, p, services.rules, year_list=year_list)
            out[(period, year_list)] = mark
    return out


def _moved(before: dict, after: dict, *, days_only: bool = False) -> set[tuple[str, bool]]:
    part = (lambda m: m[-2:]) if days_only else (lambda m: m)
    return {key for key in before if part(before[key]) != part(after[key])}


def test_a_play_of_today_moves_this_quarter_and_not_a_closed_one(services):
    county = _county(services)
    before = _fingerprints(services)
    _new_play(services, county)  # a member completes lesson B on 20 November
    assert _moved(before, _fingerprints(services)) == {("2026-Q4", False), ("2026-Q4", True)}


def test_hearing_a_completed_lesson_again_moves_no_mark(services):
    county = _county(services)
    _new_play(services, county)
    before = _fingerprints(services)
    with services.db.session() as session:
        days = marks.read(session)
    # the same member hears lesson B again on 1 December: the report's figures are the same, so is every fingerprint
    county.devices.send("r-t01-s01-000", playing(county.b, local(12, 1, 20), 0, 600))
    assert _moved(before, _fingerprints(services)) == set()
    with services.db.session() as session:
        assert marks.read(session) == days


def test_a_late_play_moves_the_quarter_it_is_dated_in(services):
    county = _county(services)
    before = _fingerprints(services)
    _late_play(services, county)  # September's plays, sent in December: a completion on 20 September
    # the later quarter too: a completion counts on its first day, so it can move a later quarter's figures
    assert _moved(before, _fingerprints(services)) == {("2026-Q3", False), ("2026-Q4", False), ("2026-Q4", True)}


def test_a_rebuild_moves_every_fingerprint(services):
    _county(services)
    before = _fingerprints(services)
    fold.rebuild(services)  # the same rows again: nothing tells a rebuild's rows from the old ones but the mark
    assert _moved(before, _fingerprints(services)) == set(ALL)


def test_a_staff_edit_moves_the_mark_of_its_day(services):
    _county(services)
    before = _fingerprints(services)
    with services.db.session() as session:
        key = attendance_edit.add_session(session, services.rules, "t01-s01", date(2026, 8, 12), time(19, 30),
                                          "夏季党课", "op", services.clock()).key
    after = _fingerprints(services)
    assert _moved(before, after) == set(ALL)  # audited: the organisation part moves every report
    assert _moved(before, after, days_only=True) == {("2026-Q3", False), ("2026-Q4", False), ("2026-Q4", True)}
    with services.db.session() as session:
        assert dict(marks.read(session))[date(2026, 8, 12)] == 1
        attendance_edit.set_attendee(session, key, "M01010002", True, "op", services.clock(), rules=services.rules)
    with services.db.session() as session:
        assert dict(marks.read(session))[date(2026, 8, 12)] == 2
    assert _moved(after, _fingerprints(services), days_only=True) == {("2026-Q3", False), ("2026-Q4", False),
                                                                      ("2026-Q4", True)}


def test_the_worker_keeps_the_default_dashboard_warm(services):
    _county(services)
    store = ReportCache(services.data / "reports").store
    assert summary.current_quarter(services.today()) == "2026-Q4"
    wanted = [(period, township, year_list) for township in (None, "t00", "t01")
              for period, year_list in [("2026-Q4", True), *((q, False) for q in [*QUARTERS, "2026-Q4"])]]
    done = []
    for _round in range(len(wanted)):
        done += summary.warm(services, store, limit=2)
    assert done == wanted  # the county first, two a round, each once
    assert summary.warm(services, store) == []
    computed: list[tuple] = []
    summary.on_compute.append(lambda *key: computed.append(key))
    try:
        cache = ReportCache(services.data / "reports")
        with services.db.session() as session:
            read = summary.read_marks(session)
            for period, township, year_list in wanted:
                assert cache.participation(session, period, services.rules, township=township, now=services.clock(),
                                           year_list=year_list, marks=read).current
    finally:
        summary.on_compute.clear()
    assert computed == []  # the first view computes nothing
