"""The dashboard's kept participation reports (``server.attendance.summary``): a kept report is served only while
nothing it is computed from changed, so it always equals a fresh ``reports.participation``, after new plays
through ingest, an operator's attendee edit, a member's edit and a rebuild of the aggregates."""

from __future__ import annotations

from datetime import date

from server.attendance import edit as attendance_edit, fold, reports
from server.attendance.summary import ReportCache, fingerprint
from server.org import service as org
from tests.server.test_reports import local, make_county, playing

TODAY = date(2026, 12, 3)


def _numbers(report: reports.Report) -> tuple:
    rows = [report.county, *report.townships, *report.sites]
    return (tuple((r.code, r.active, r.trained, r.classes, r.broadcast_days) for r in rows),
            tuple(m.member_no for m in report.untrained_this_year),
            tuple((m.member_no, m.completed, m.classes) for m in report.members))


def _check(services, cache: ReportCache, *, kept: bool) -> reports.Report:
    """The cache's report equals a fresh one; KEPT: it is the very report computed before."""
    with services.db.session() as session:
        before = cache._kept.get(("2026-Q4", None))
        got = cache.participation(session, "2026-Q4", services.rules, township=None, now=services.clock(),
                                  today=TODAY)
        fresh = reports.participation(session, "2026-Q4", services.rules, now=services.clock())
    assert _numbers(got) == _numbers(fresh)
    assert (before is not None and got.members is before[1].members) == kept
    return got


def test_a_kept_report_follows_every_change(services):
    county = make_county(services)
    cache = ReportCache()
    first = _check(services, cache, kept=False)
    _check(services, cache, kept=True)
    assert first.county.trained == 3

    # new plays through ingest: the t01-s01 radio's member (who heard half of B) completes B
    county.devices.send("r-t01-s01-000", playing(county.b, local(11, 20, 20), 0, 600))
    after_play = _check(services, cache, kept=False)
    assert after_play.county.trained == 4

    # an operator adds an attendee to the class
    with services.db.session() as session:
        attendance_edit.set_attendee(session, county.class_key, "M00000002", True, "op", services.clock())
    assert _check(services, cache, kept=False).county.trained == 5

    # a member leaves before the quarter: no longer active
    org.update_member(services, "M01000002", {"left": "2026-09-01"}, "admin")
    assert _check(services, cache, kept=False).county.active == 11

    # a rebuild rewrites the aggregates from the events (staff entries stay)
    _check(services, cache, kept=True)
    fold.rebuild(services)
    assert _check(services, cache, kept=False).county.trained == 5


def test_the_fingerprint_reads_the_day(services):
    make_county(services)
    with services.db.session() as session:
        assert fingerprint(session, TODAY) != fingerprint(session, date(2027, 1, 1))
        assert fingerprint(session, TODAY) == fingerprint(session, TODAY)
