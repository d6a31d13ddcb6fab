"""Make-up records over the real app, without devices (tests/e2e/test_makeup.py pushes them to real radios): the
county of ``tests/server/test_reports.py`` has a class at t00-s00 (M00000001 checked in; M00000000 holds a radio,
M00000002 none) and a class slot at t01-s00 (M01000001 checked in). The setting decides whether the sweep records
nothing, or records the make-ups and waits for an operator's approval; members without a radio are on the
operator's visit list; the report counts owed, open and overdue per site."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from lessoncast.cli import main

from server.training import makeup
from tests.conftest import make_services
from tests.server.test_reports import local, make_county


@pytest.fixture
def approval(tmp_path):
    svc = make_services(tmp_path / "data", makeup_mode="approval")
    yield svc
    svc.db.dispose()


def test_makeups_wait_for_the_class_to_end_then_approval_and_radioless_members_are_listed(approval, token, tmp_path,
                                                                                          monkeypatch):
    from server.app import create_app

    services = approval
    make_county(services)
    client = create_app(services=services).test_client()
    admin = {"Authorization": f"Bearer {token('admin')}"}
    # the t00-s00 class ends on 12 Oct; while its check-in window is open it is not swept
    assert makeup.sweep(services, local(10, 12, 19, 30)) == []
    assert client.get("/api/v1/reports/makeups", headers=admin).get_json() == {"sites": [], "owed": []}
    services.clock = lambda: local(11, 6, 12)  # after both classes' check-in windows
    swept = client.post("/api/v1/makeups/sweep", headers=admin)
    assert swept.status_code == 200 and swept.get_json() == {"published": []}, "approval: nothing is pushed yet"
    report = client.get("/api/v1/reports/makeups", headers=admin).get_json()
    assert report == {"sites": [], "owed": []}, "make-ups awaiting approval are not owed yet"
    operator = {"Authorization": f"Bearer {token('operator', township='t01')}"}
    keys = [s["key"] for s in client.get("/api/v1/sessions?period=2026-Q4&classes_only=1",
                                         headers=admin).get_json()["sessions"]]
    t00_class = next(k for k in keys if "term-t00-s00" in k)
    t01_class = next(k for k in keys if "term-t01-s00" in k)
    assert client.post(f"/api/v1/makeups/{t00_class}/approve", headers=operator).status_code == 403
    assert client.post("/api/v1/makeups/nope/approve", headers=admin).status_code == 404
    # Approving would publish (tests/e2e/test_makeup.py does); this county's renditions are not real files, so the
    # approval is recorded directly and the records are checked.
    with services.db.session() as session:
        from server.training.models import MakeupSession

        for key in (t00_class, t01_class):
            session.get(MakeupSession, key).state = "owed"
    visits = client.get("/api/v1/makeups/visits", headers=operator).get_json()["visits"]
    assert [(v["member_no"], v["site"], v["state"]) for v in visits] == [
        ("M01000002", "t01-s00", "open")], "an operator sees their township's members without a radio"
    report = client.get("/api/v1/reports/makeups", headers=admin).get_json()
    assert [(s["site"], s["owed"], s["done"], s["overdue"], s["open"]) for s in report["sites"]] == [
        ("t00-s00", 2, 0, 0, 2), ("t01-s00", 2, 0, 0, 2)]
    services.clock = lambda: local(12, 31, 12)
    late = client.get("/api/v1/reports/makeups?period=2026-Q4", headers=admin).get_json()
    assert [(s["site"], s["overdue"]) for s in late["sites"]] == [("t00-s00", 2), ("t01-s00", 2)]
    assert late["participation"] == {"period": "2026-Q4", "members": 6, "attended": 2, "made_up": 0,
                                     "overdue": 4, "rate": 0.3333, "rate_with_makeups": 0.3333}
    assert client.post("/api/v1/makeups/sweep", headers=operator).status_code == 403
    check_exports_agree(client, admin, late, services, tmp_path, monkeypatch)


def check_exports_agree(client, admin, body, services, tmp_path, monkeypatch):
    """The make-up report's CSV and XLSX (API) and the CLI's file hold the figures of its JSON."""
    as_csv = client.get("/api/v1/reports/makeups?period=2026-Q4&format=csv&table=participation&lang=en",
                        headers=admin)
    assert as_csv.status_code == 200 and "makeups-2026-Q4-participation.csv" in as_csv.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(as_csv.data.decode("utf-8-sig"))))
    assert rows[0][-2:] == ["Participation rate without make-ups", "Participation rate with make-ups"]
    p = body["participation"]
    assert rows[1] == [str(p[k]) for k in ("period", "members", "attended", "made_up", "overdue", "rate",
                                            "rate_with_makeups")]
    sites = list(csv.reader(io.StringIO(client.get("/api/v1/reports/makeups?period=2026-Q4&format=csv&lang=en",
                                                   headers=admin).data.decode("utf-8-sig"))))
    assert [(r[1], r[2], r[5]) for r in sites[1:]] == [(s["site"], str(s["owed"]), str(s["overdue"]))
                                                       for s in body["sites"]]
    xlsx = client.get("/api/v1/reports/makeups?period=2026-Q4&format=xlsx", headers=admin)
    book = load_workbook(io.BytesIO(xlsx.data))
    sheet = book.worksheets[-1]
    assert sheet.title == "参与率（含与不含补课）"
    values = [[c.value for c in row] for row in sheet.iter_rows() if any(c.value is not None for c in row)]
    assert values[-1][-2:] == [p["rate"], p["rate_with_makeups"]]
    assert "参与率" in "".join(str(v) for v in values[-2]), "zh_CN headers by default"
    bad = client.get("/api/v1/reports/makeups?period=2026-Q4&format=pdf", headers=admin)
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "bad_format"

    monkeypatch.setenv("LESSONCAST_DATA_DIR", str(services.settings.data_path))
    out = tmp_path / "m.csv"
    done = CliRunner().invoke(main, ["training", "makeup-report", "--period", "2026-Q4", "--format", "csv",
                                     "--table", "participation", "--lang", "en", "-o", str(out)])
    assert done.exit_code == 0, done.output
    cli_rows = list(csv.reader(io.StringIO(out.read_text("utf-8-sig"))))
    # the CLI runs on the real clock, so only the overdue count (which depends on "now") may differ
    assert cli_rows[0] == rows[0] and cli_rows[1][:4] + cli_rows[1][5:] == rows[1][:4] + rows[1][5:]
    done = CliRunner().invoke(main, ["training", "makeup-report", "--period", "no-such-period"])
    assert done.exit_code != 0


def _owed(member: int, due_day: int, done_day):
    due = datetime(2026, 12, due_day, tzinfo=timezone.utc)
    done = None if done_day is None else datetime(2026, 12, done_day, tzinfo=timezone.utc)
    return makeup.Owed("k", member, f"M{member}", "", "s", "t", 1, None, due, done)


NOW = datetime(2026, 12, 20, tzinfo=timezone.utc)


@pytest.mark.parametrize("attended, debts, expected", [
    # (members who attended a class, {member: [(due day, done day)]}) -> (attended, made_up, overdue)
    ({1}, {}, (1, 0, 0)),                                   # attended: counted without make-ups
    ({1}, {1: [(10, None)]}, (1, 0, 0)),                    # attended one class, owes another's: still attended
    (set(), {1: [(25, 12)]}, (0, 1, 0)),                    # made up in time: counted only with make-ups
    (set(), {1: [(10, 15)]}, (0, 1, 0)),                    # made up after the deadline: still made up (late)
    (set(), {1: [(25, 12), (25, None)]}, (0, 0, 0)),        # one of two lessons made up, the other not due yet
    (set(), {1: [(25, 12), (10, None)]}, (0, 0, 1)),        # one made up, the other overdue: overdue
    (set(), {1: [(10, None)]}, (0, 0, 1)),                  # owed and past its deadline
    (set(), {1: [(25, None)]}, (0, 0, 0)),                  # owed, deadline ahead: neither yet
    (set(), {}, (0, 0, 0)),                                 # absent and nothing owed (make-ups off)
])
def test_participation_with_and_without_makeups(attended, debts, expected):
    members = [1, 2, 3, 4]
    counted = makeup.count_participation(members, attended, {m: [_owed(m, *d) for d in ds]
                                                             for m, ds in debts.items()}, NOW)
    assert (counted.attended, counted.made_up, counted.overdue) == expected
    assert counted.members == 4
    assert counted.rate == round(expected[0] / 4, 4)
    assert counted.rate_with_makeups == round((expected[0] + expected[1]) / 4, 4)


def test_participation_rates_of_no_members_are_empty():
    counted = makeup.count_participation([], set(), {}, NOW)
    assert (counted.rate, counted.rate_with_makeups) == (None, None)


def test_makeups_off_records_nothing_owed(tmp_path):
    services = make_services(tmp_path / "data", makeup_mode="off")
    make_county(services)
    assert makeup.sweep(services, local(11, 6, 12)) == []
    with services.db.session() as session:
        assert makeup.owed(session) == []
    services.db.dispose()
