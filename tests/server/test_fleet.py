"""The fleet's states, counts, status history and alerts (server.devices.fleet), from statuses stored the way
ingest stores them, at fixed times."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest

from server.devices import fleet, registry as devices
from server.errors import Invalid
from server.events.ingest import store_status
from server.org import service as org_service

pytestmark = pytest.mark.databases  # each test runs on SQLite and on PostgreSQL (the hourly and window SQL differ)
NOW = datetime(2026, 12, 3, 8, 0, tzinfo=timezone.utc)


def _thresholds(**changes):
    base = dict(now=NOW, silent_after_s=900, offline_days=3, low_battery=20, storage_low_mb=500)
    return fleet.Thresholds(**{**base, **changes})


def _current(services, uid):
    from server.programmes.models import Channel

    with services.db.session() as session:
        device = devices.get(session, uid)
        channel = session.get(Channel, device.channel)
        return channel.manifest_version if channel else None


def _status(services, uid, at, **body):
    body = {"online": True, "sync": "idle", "manifest_version": _current(services, uid), **body}
    assert store_status(services, uid, json.dumps(body).encode(), at)


@pytest.fixture
def fleet_of(org, enrolled):
    """Five enrolled radios in 青山镇 and one in 海湾镇, each reporting a different trouble."""
    services = org
    uids = {name: enrolled("radio", name=name, site="qs-01")["device"]
            for name in ("fine", "quiet", "gone", "failing", "weak")}
    uids["far"] = enrolled("radio", name="far", site="hw-01")["device"]
    _status(services, uids["fine"], NOW - timedelta(minutes=1), battery=90, storage_free_mb=4000)
    _status(services, uids["quiet"], NOW - timedelta(hours=2), battery=90, storage_free_mb=4000)
    _status(services, uids["gone"], NOW - timedelta(days=4), battery=90, storage_free_mb=4000)
    _status(services, uids["failing"], NOW - timedelta(minutes=2), battery=90, storage_free_mb=300, sync="error",
            stale=True, manifest_version=None)
    _status(services, uids["weak"], NOW - timedelta(minutes=3), battery=15, storage_free_mb=4000)
    _status(services, uids["far"], NOW - timedelta(minutes=3), battery=5, storage_free_mb=100)
    return services, uids


def test_each_state_is_counted_and_flagged_alike(fleet_of):
    services, uids = fleet_of
    t = _thresholds()
    with services.db.session() as session:
        counts = fleet.counts(session, t, "qs")
        assert counts == {"total": 5, "online": 3, "offline": 2, "offline_long": 1, "stale": 1, "sync_failed": 1,
                          "behind": 1, "low_battery": 1, "storage_low": 1}
        for state in fleet.STATES:
            total, rows = fleet.listing(session, t, township="qs", state=state)
            assert total == counts[state] == len(rows)
            assert all(state in r["states"] for r in rows)
        _total, rows = fleet.listing(session, t, township="qs", sort="seen")
        assert [r["name"] for r in rows] == ["gone", "quiet", "weak", "failing", "fine"]  # longest silent first
        assert fleet.counts(session, t)["total"] == 6


def test_a_last_will_or_a_long_silence_makes_a_device_offline(fleet_of):
    services, uids = fleet_of
    with services.db.session() as session:
        assert "online" in fleet.listing(session, _thresholds(), uids=[uids["fine"]])[1][0]["states"]
        later = _thresholds(now=NOW + timedelta(minutes=20))
        assert "offline" in fleet.listing(session, later, uids=[uids["fine"]])[1][0]["states"]
    assert store_status(services, uids["fine"], b'{"online":false}', NOW)
    with services.db.session() as session:
        assert "offline" in fleet.listing(session, _thresholds(), uids=[uids["fine"]])[1][0]["states"]


def test_history_and_online_periods(org, enrolled):
    services = org
    uid = enrolled("radio", name="r", site="qs-01")["device"]
    start = NOW - timedelta(hours=3)
    for minute in range(0, 60, 5):  # an hour of reports every 5 minutes, then silence, then 10 minutes more
        _status(services, uid, start + timedelta(minutes=minute), battery=80 - minute // 5, storage_free_mb=1000)
    for minute in range(120, 131, 5):
        _status(services, uid, start + timedelta(minutes=minute), battery=60, storage_free_mb=900)
    assert store_status(services, uid, b'{"online":false}', start + timedelta(minutes=132))
    with services.db.session() as session:
        changed = fleet.status_week(session, uid, NOW - timedelta(days=1), NOW, 600)
        hours = changed["history"]
        assert [(h["reports"], h["online"], h["battery"], h["storage_free_mb"]) for h in hours] == \
            [(12, 12, 69, 1000), (4, 3, 60, 900)]
        periods = changed["periods"]
        assert periods == [(start, start + timedelta(minutes=55)),
                           (start + timedelta(minutes=120), start + timedelta(minutes=132))]
        assert [e["sync"] for e in changed["sync_log"]] == ["idle"]


def test_alerts_name_a_radio_whose_member_left(org, enrolled):
    services = org
    org_service.import_members(services, "member_id,name,site_code,left\nm1,张三,qs-01,2026-11-30\n"
                               "m2,李四,qs-01,\n".encode(), "test")
    uid = enrolled("radio", name="张三的收音机", site="qs-01", member_no="m1")["device"]
    enrolled("radio", name="李四的收音机", site="qs-01", member_no="m2")
    with services.db.session() as session:
        alerts = fleet.alerts(session, _thresholds(), "qs", date(2026, 12, 3))
        assert [r["uid"] for r in alerts["departed"]] == [uid]
        assert fleet.alerts(session, _thresholds(), "hw", date(2026, 12, 3))["departed"] == []


def test_unknown_state_or_sort_is_refused(org):
    with org.db.session() as session:
        for kwargs in ({"state": "asleep"}, {"sort": "battery"}):
            with pytest.raises(Invalid):
                fleet.listing(session, _thresholds(), **kwargs)


def test_a_csv_dry_run_stores_nothing_and_lists_each_bad_row(org):
    services = org
    text = "kind,name,site\nradio,a,qs-01\nradio,,qs-01\nlamp,c,qs-01\n"
    with pytest.raises(Invalid) as refused:
        devices.import_csv(services, text, "test", dry_run=True)
    assert [line for line, _e in refused.value.row_errors] == [3, 4]
    assert len(devices.import_csv(services, "kind,name,site\nradio,a,qs-01\n", "test", dry_run=True)) == 1
    with services.db.session() as session:
        assert fleet.counts(session, _thresholds())["total"] == 0
