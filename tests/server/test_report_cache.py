"""The dashboard's kept participation reports (``server.attendance.summary``): after the worker's refresh every kept
report equals a fresh ``reports.participation``, whatever changed (new plays through ingest, an edit of a past
class session, a rebuild of the aggregates, a member import); a kept report whose data moved is served with the
time of its figures, never as current; and a new play does not compute a closed quarter again (counted through
``summary.on_compute``, not timed)."""

from __future__ import annotations

import re
from datetime import date, time

import pytest

from server.accounts.auth import hash_password
from server.accounts.models import User
from server.app import create_app
from server.attendance import edit as attendance_edit, fold, reports, summary
from server.attendance.summary import ReportCache
from server.org import service as org
from server.programmes import service as programmes
from server.programmes.models import Programme
from tests.server.test_reports import local, make_county, playing

QUARTERS = ["2026-Q1", "2026-Q2", "2026-Q3"]


def _numbers(report: reports.Report) -> tuple:
    rows = [report.county, *report.townships, *report.sites]
    return (tuple((r.code, r.active, r.trained, r.classes, r.broadcast_days, r.clock_flagged) for r in rows),
            tuple(m.member_no for m in report.untrained_this_year),
            tuple((m.member_no, m.completed, m.classes, m.last_training) for m in report.members))


@pytest.fixture
def computed():
    """Every report computation, as (period, township, year_list)."""
    seen: list[tuple] = []
    summary.on_compute.append(lambda *key: seen.append(key))
    yield seen
    summary.on_compute.clear()


def _view(services, cache: ReportCache, period: str, *, year_list: bool, max_age: float = 0.0) -> summary.Kept:
    with services.db.session() as session:
        return cache.participation(session, period, services.rules, township=None, now=services.clock(),
                                   year_list=year_list, max_age=max_age)


def _fresh(services, period: str, *, year_list: bool) -> reports.Report:
    with services.db.session() as session:
        report = reports.participation(session, period, services.rules, now=services.clock())
    return report if year_list else reports.Report(**{**report.__dict__, "untrained_this_year": []})


def _county(services):
    """tests.server.test_reports' county, and a published programme of the third quarter (lesson B)."""
    county = make_county(services)
    pid = programmes.create(services, {"code": "2026-Q3", "title": "夏季学习", "valid_from": "2026-07-01",
                                       "valid_until": "2026-09-30", "items": [{"lesson": county.b[0], "mandatory": True}],
                                       "slots": ["07:00"]}, "test")
    with services.db.session() as session:  # published without signing: reports only read the state
        session.get(Programme, pid).state = "published"
    return county


def _dashboard(services, cache: ReportCache) -> None:
    """What the dashboard reads: this quarter with the year's list, and the quarters of the year without it."""
    _view(services, cache, "2026-Q4", year_list=True)
    for q in [*QUARTERS, "2026-Q4"]:
        _view(services, cache, q, year_list=False)


def _new_play(services, county) -> None:
    # the t01-s01 radio's member (who heard half of B) completes B in this quarter
    county.devices.send("r-t01-s01-000", playing(county.b, local(11, 20, 20), 0, 600))


def _late_play(services, county) -> None:
    # a radio that was out of reach sends September's plays in December: the t01-s00 holder completes lesson B of 2026-Q3
    county.devices.send("r-t01-s00-000", playing(county.b, local(9, 20, 20), 0, 600, programme="2026-Q3"))


def _past_class_edit(services, county) -> None:
    with services.db.session() as session:
        row = attendance_edit.add_session(session, services.rules, "t01-s01", date(2026, 8, 12), time(19, 30),
                                          "夏季党课", "op", services.clock())
        key = row.key
    with services.db.session() as session:
        attendance_edit.set_attendee(session, key, "M01010002", True, "op", services.clock())


def _rebuild(services, county) -> None:
    fold.rebuild(services)


def _member_import(services, county) -> None:
    org.import_members(services, "member_id,name,site_code\nM09000001,新党员,t00-s01\n".encode(), "admin")


CHANGES = {"new play in the current quarter": _new_play, "late play in a past quarter": _late_play,
           "edit of a past class session": _past_class_edit,
           "rebuild of the aggregates": _rebuild, "member import": _member_import}


@pytest.mark.parametrize("change", list(CHANGES))
def test_the_kept_reports_equal_fresh_ones_after_the_refresh(services, computed, change):
    county = _county(services)
    cache = ReportCache(services.data / "reports")
    _dashboard(services, cache)
    CHANGES[change](services, county)
    summary.refresh(services, cache.store, force=True)
    computed.clear()
    for period, year_list in [("2026-Q4", True), *((q, False) for q in [*QUARTERS, "2026-Q4"])]:
        kept = _view(services, cache, period, year_list=year_list, max_age=3600)
        assert kept.current, (change, period)
        assert _numbers(kept.report) == _numbers(_fresh(services, period, year_list=year_list)), (change, period)
    assert computed == []  # the refresh did it: no page computes


def test_a_new_play_does_not_recompute_closed_quarters(services, computed):
    county = _county(services)
    cache = ReportCache(services.data / "reports")
    _dashboard(services, cache)
    assert len(computed) == 5
    computed.clear()
    _new_play(services, county)
    done = summary.refresh(services, cache.store, force=True)
    assert sorted(done) == [("2026-Q4", None, False), ("2026-Q4", None, True)]
    assert sorted(computed) == sorted(done)
    # plays of September sent late compute the third quarter again, not the first two
    computed.clear()
    _late_play(services, county)
    done = summary.refresh(services, cache.store, force=True)
    # Q4 too: a completion counts on its first day, so an earlier one can move a later quarter's figures
    assert sorted(done) == [("2026-Q3", None, False), ("2026-Q4", None, False), ("2026-Q4", None, True)]
    assert cache.store.get(("2026-Q3", None, False)).report.county.trained == 1
    # and an edit of a past quarter's class computes that quarter (and the year's list), not the others
    computed.clear()
    _past_class_edit(services, county)
    with services.db.session() as session:
        q1 = summary.fingerprint(session, reports.resolve_period(session, "2026-Q1", services.rules)[0],
                                 services.rules, year_list=False)
    assert q1 != cache.store.get(("2026-Q1", None, False)).mark  # the audit entry moves every report
    summary.refresh(services, cache.store, force=True)
    assert _numbers(cache.store.get(("2026-Q3", None, False)).report) == _numbers(
        _fresh(services, "2026-Q3", year_list=False))
    assert cache.store.get(("2026-Q3", None, False)).report.county.classes == 1


def test_a_moved_report_is_served_with_its_age_until_refreshed(services, computed):
    county = _county(services)
    cache = ReportCache(services.data / "reports")
    first = _view(services, cache, "2026-Q4", year_list=True)
    assert first.current and len(computed) == 1
    before = first.report.county.trained
    _new_play(services, county)
    stale = _view(services, cache, "2026-Q4", year_list=True, max_age=3600)
    assert not stale.current and stale.as_of == first.as_of and stale.report.county.trained == before
    assert len(computed) == 1  # served kept, not computed by the page
    # past its maximum age, or with none allowed, the page computes it
    fresh = _view(services, cache, "2026-Q4", year_list=True, max_age=0)
    assert fresh.current and fresh.report.county.trained == before + 1 and len(computed) == 2


def test_a_report_is_computed_once_when_none_is_kept(services, computed):
    _county(services)
    cache = ReportCache(services.data / "reports")
    for _ in range(3):
        assert _view(services, cache, "2026-Q2", year_list=False, max_age=3600).current
    assert computed == [("2026-Q2", None, False)]
    # another process (the worker) reads the same kept report from the data directory
    other = ReportCache(services.data / "reports")
    assert _view(services, other, "2026-Q2", year_list=False).current
    assert computed == [("2026-Q2", None, False)]


def _signed_in(services):
    app = create_app(services=services)
    with services.db.session() as session:
        session.add(User(username="viewer", password_hash=hash_password("viewer-password-1"), role="viewer",
                         created_at=services.clock()))
    client = app.test_client()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    assert client.post("/login", data={"username": "viewer", "password": "viewer-password-1",
                                       "csrf_token": csrf}).status_code == 302
    return client


def _county_figures(page: str) -> tuple[str, str]:
    found = re.search(r'id="county-figures" data-active="(\d+)" data-trained="(\d+)"', page)
    return found.group(1), found.group(2)


def test_the_dashboard_says_how_old_its_figures_are(services, computed):
    county = _county(services)
    client = _signed_in(services)
    page = client.get("/attendance?period=2026-Q4").text
    assert "数据截至" in page and 'data-current="true"' in page and "正在统计" not in page
    assert _county_figures(page) == ("12", "3") and len(computed) == 5
    # new plays: the page shows the kept figures with their time, and says newer plays are being counted
    _new_play(services, county)
    page = client.get("/attendance?period=2026-Q4").text
    assert 'data-current="false"' in page and "正在统计" in page and _county_figures(page) == ("12", "3")
    assert len(computed) == 5  # no page computed
    # the worker's refresh: current again, with the new figures
    summary.refresh(services, force=True)
    page = client.get("/attendance?period=2026-Q4").text
    assert 'data-current="true"' in page and _county_figures(page) == ("12", "4")
    assert sorted(computed[5:]) == [("2026-Q4", None, False), ("2026-Q4", None, True)]
    # the site page (its township's report) says it too
    assert "数据截至" in client.get("/attendance/sites/t00-s00?period=2026-Q4").text


def test_the_refresh_runs_at_most_once_per_interval(services, computed):
    county = _county(services)
    cache = ReportCache(services.data / "reports")
    _view(services, cache, "2026-Q4", year_list=True)
    summary.refresh(services, cache.store, force=True)
    _new_play(services, county)
    assert services.settings.report_refresh >= 1.0
    assert summary.refresh(services, cache.store) == []  # within the interval of the last one: nothing computed
    summary._last_refresh[0] -= services.settings.report_refresh  # the interval has passed
    assert summary.refresh(services, cache.store) == [("2026-Q4", None, True)]
