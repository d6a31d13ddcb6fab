"""Every "today" is the county's (LESSONCAST_COUNTY_TIMEZONE), read from the injected clock.

At 00:30 in Asia/Shanghai it is still 16:30 of the day before in UTC: a product that took the server's UTC date
would start a hand-over on the previous county day and credit the new holder with the old holder's plays.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from server.devices import enrolment, registry as devices
from server.org import service as org
from server.programmes import publish
from tests.conftest import make_services

pytestmark = pytest.mark.databases  # each test runs on SQLite and on PostgreSQL

# 00:30 on 15 December 2026 in the county (UTC+8) is 16:30 on the 14th in UTC.
AT_0030 = datetime(2026, 12, 14, 16, 30, tzinfo=timezone.utc)
COUNTY_DAY = date(2026, 12, 15)
EARLIER = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)

MEMBERS = ("member_id,name,site_code,groups\n"
           "M001,张三,qs-01,\n"
           "M002,李四,qs-01,sea-branch\n")


@pytest.fixture
def county(org):
    """The conftest organisation with two members at 东村; M002 is in the sea branch."""
    from server.org import service as org_mod

    org_mod.import_members(org, MEMBERS.encode(), "test")
    return org


def at(services, instant: datetime) -> None:
    """Set the services' clock to INSTANT."""
    services.clock = lambda: instant


@pytest.mark.parametrize(("zone", "instant", "day"), [
    ("Asia/Shanghai", AT_0030, COUNTY_DAY),
    ("Asia/Shanghai", datetime(2026, 12, 14, 15, 59, tzinfo=timezone.utc), date(2026, 12, 14)),  # 23:59 county
    ("Asia/Shanghai", datetime(2026, 12, 31, 16, 30, tzinfo=timezone.utc), date(2027, 1, 1)),  # a new year
    ("Asia/Urumqi", datetime(2026, 12, 14, 17, 59, tzinfo=timezone.utc), date(2026, 12, 14)),  # UTC+6: 23:59
    ("Asia/Urumqi", datetime(2026, 12, 14, 18, 0, tzinfo=timezone.utc), COUNTY_DAY),
])
def test_today_is_the_county_day_of_the_injected_clock(tmp_path, zone, instant, day):
    services = make_services(tmp_path / "d", county_timezone=zone)
    at(services, instant)
    assert services.today() == day
    services.db.dispose()


def test_device_add_with_a_member_holds_it_from_the_county_day(county):
    at(county, AT_0030)
    with county.db.session() as session:
        new = devices.add(county, session, kind="radio", name="收音机", site_code="qs-01", member_no="M001",
                          actor="test")
    with county.db.session() as session:
        held = devices.device_json(devices.get(session, new.uid))["assignments"]
    assert held == [{"member": "M001", "from": "2026-12-15", "until": None}]


def test_api_add_and_hand_over_at_half_past_midnight(county, client, auth):
    at(county, EARLIER)
    added = client.post("/api/v1/devices", headers=auth("admin"),
                        json={"kind": "radio", "name": "收音机", "site": "qs-01", "member": "M001"})
    assert added.status_code == 201, added.get_json()
    uid = added.get_json()["id"]
    assert added.get_json()["assignments"] == [{"member": "M001", "from": "2026-12-01", "until": None}]
    at(county, AT_0030)
    # No member_from: the hand-over happens today, the county's 15 December; M001 held it to the 14th.
    moved = client.patch(f"/api/v1/devices/{uid}", headers=auth("admin"), json={"member": "M002"})
    assert moved.status_code == 200, moved.get_json()
    assert moved.get_json()["assignments"] == [
        {"member": "M001", "from": "2026-12-01", "until": "2026-12-14"},
        {"member": "M002", "from": "2026-12-15", "until": None},
    ]


def test_a_hand_over_moves_the_radio_to_the_new_holders_channel_at_once(county, enrolled):
    at(county, EARLIER)
    uid = enrolled("radio", site="qs-01", member_no="M001")["device"]
    at(county, AT_0030)
    # Handed over for today, named as staff name it: the county's date.
    devices.update(county, uid, {"member": "M002", "member_from": "2026-12-15"}, "test")
    with county.db.session() as session:
        device = devices.get(session, uid)
        devices.refresh_channel(county, session, device)
        channel = device.channel
        plan = publish.plan(county, session)
    # Today M002 holds it, so the sea branch is in its audience: in its config and in what a publish works out.
    sea = next(c for c in plan.channels.values() if uid in c.devices)
    assert "sea-branch" in sea.audience.groups and sea.id == channel


def test_new_devices_keep_county_days_in_the_county_time_zone(tmp_path):
    services = make_services(tmp_path / "d", county_timezone="Asia/Urumqi")
    org.import_sites(services, "township_code,township_name,site_code,site_name\nqs,青山镇,qs-01,东村\n".encode(),
                     "test")
    with services.db.session() as session:
        new = devices.add(services, session, kind="terminal", name="大屏", site_code="qs-01", actor="test")
    config = enrolment.enrol(services, new.code)["config"]
    # The device reads its broadcast slots and download window in this zone: it must be the county's.
    assert config["timezone"] == "Asia/Urumqi"
    services.db.dispose()


def test_a_members_record_defaults_to_the_county_year(county, client, auth):
    at(county, datetime(2026, 12, 31, 16, 30, tzinfo=timezone.utc))  # 00:30 on 1 January 2027 in the county
    answer = client.get("/api/v1/members/M001/record", headers=auth("admin"))
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["meta"]["period"] == "2027"
