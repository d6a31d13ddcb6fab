"""Make-up records over the real app, without devices (tests/e2e/test_makeup.py pushes them to real radios): the
county of ``tests/server/test_reports.py`` has a class at t00-s00 (M00000001 checked in; M00000000 holds a radio,
M00000002 none) and a class slot at t01-s00 (M01000001 checked in). The setting decides whether the sweep records
nothing, or records the make-ups and waits for an operator's approval; members without a radio are on the
operator's visit list; the report counts owed, open and overdue per site."""

from __future__ import annotations

from datetime import timedelta

import pytest

from server.training import makeup
from tests.conftest import make_services
from tests.server.test_reports import local, make_county


@pytest.fixture
def approval(tmp_path):
    svc = make_services(tmp_path / "data", makeup_mode="approval")
    yield svc
    svc.db.dispose()


def test_makeups_wait_for_the_class_to_end_then_approval_and_radioless_members_are_listed(approval, token):
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


def test_makeups_off_records_nothing_owed(tmp_path):
    services = make_services(tmp_path / "data", makeup_mode="off")
    make_county(services)
    assert makeup.sweep(services, local(11, 6, 12)) == []
    with services.db.session() as session:
        assert makeup.owed(session) == []
    services.db.dispose()
