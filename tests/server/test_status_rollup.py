"""The hourly status rollup (server.events.rollup, written by ingest's store_status) equals what the minute rows
give, whatever order the statuses arrive in, on SQLite and PostgreSQL; and old minute rows are pruned."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import case, func, select

from server.devices import fleet
from server.events.ingest import store_status
from server.events.models import DeviceStatusHistory, DeviceStatusHourly
from server.jobs import worker

pytestmark = pytest.mark.databases
T0 = datetime(2026, 12, 3, 5, 0, tzinfo=timezone.utc)


def _m(minutes):
    return T0 + timedelta(minutes=minutes)


# (name, statuses as (minute, body or None for a last will)) in the order they arrive
CASES = [
    ("in order, one hour", [(m, {"battery": 90 - m, "storage_free_mb": 1000 + m}) for m in range(0, 60, 7)]),
    ("late and out of order across hours", [(70, {"battery": 50, "storage_free_mb": 800}),
                                            (5, {"battery": 80, "storage_free_mb": 900}),
                                            (65, {"battery": 55, "storage_free_mb": 700}),
                                            (59, {"battery": 81, "storage_free_mb": 950}),
                                            (2, {"battery": 82, "storage_free_mb": 990})]),
    ("going offline (a last will) and back", [(0, {"battery": 40, "storage_free_mb": 300}),
                                              (1, {"battery": 39, "storage_free_mb": 300}),
                                              (2, None), (30, {"battery": 38}), (31, None),
                                              (62, {"online": False, "battery": 37, "storage_free_mb": 200})]),
    ("fields missing or of the wrong type", [(3, {"battery": "full", "storage_free_mb": None}),
                                             (4, {"storage_free_mb": 10}), (1, {"battery": 5})]),
]


def _oracle(session, uid):
    """Each hour's figures straight from the minute rows, by SQL (the hour is grouped in Python: the SQL differs)."""
    h = DeviceStatusHistory
    rows = session.execute(select(h.at, h.online, h.battery, h.storage_free_mb).where(h.device_uid == uid)
                           .order_by(h.at, h.id)).all()
    hours = sorted({r.at.replace(minute=0, second=0, microsecond=0) for r in rows})
    out = {}
    for hour in hours:
        w = (h.device_uid == uid, h.at >= hour, h.at < hour + timedelta(hours=1))
        agg = session.execute(select(
            func.count(), func.sum(case((h.online.is_(True), 1), else_=0)), func.min(h.battery), func.max(h.battery),
            func.min(h.storage_free_mb),
            func.min(case((h.online.is_(True), h.at))), func.max(case((h.online.is_(True), h.at))),
            func.min(case((h.online.is_(False), h.at))), func.max(case((h.online.is_(False), h.at)))).where(*w)).one()
        last = session.execute(select(h.battery, h.at).where(*w, h.battery.is_not(None))
                               .order_by(h.at.desc(), h.id.desc()).limit(1)).first()

        def aware(v):
            return None if v is None else (datetime.fromisoformat(v) if isinstance(v, str) else v).replace(
                tzinfo=timezone.utc)
        out[hour] = (agg[0], agg[1], agg[2], agg[3], last[0] if last else None, last[1] if last else None, agg[4],
                     *(aware(v) for v in agg[5:]))
    return out


def _rollup(session, uid):
    r = DeviceStatusHourly
    return {row.hour: (row.reports, row.online_reports, row.min_battery, row.max_battery, row.last_battery,
                       row.last_battery_at, row.min_storage_free_mb, row.first_online_at, row.last_online_at,
                       row.first_offline_at, row.last_offline_at)
            for row in session.scalars(select(r).where(r.device_uid == uid))}


@pytest.mark.parametrize("name,statuses", CASES, ids=[c[0] for c in CASES])
def test_rollup_equals_the_minute_rows(org, enrolled, name, statuses):
    services = org
    uid = enrolled("radio", name="r", site="qs-01")["device"]
    for minute, body in statuses:
        payload = b'{"online":false}' if body is None else json.dumps({"online": True, **body}).encode()
        assert store_status(services, uid, payload, _m(minute))
    with services.db.session() as session:
        expected = _oracle(session, uid)
        assert _rollup(session, uid) == expected
        assert sum(v[0] for v in expected.values()) == len(statuses)


def test_out_of_order_arrival_gives_the_same_rollup_as_in_order(org, enrolled):
    services = org
    statuses = [(m, {"battery": 100 - m, "storage_free_mb": 5000 - 3 * m}) for m in range(0, 130, 3)]
    uids = [enrolled("radio", name=n, site="qs-01")["device"] for n in ("a", "b")]
    for uid, order in zip(uids, (statuses, statuses[::-2] + statuses[-2::-2])):
        for minute, body in order:
            assert store_status(services, uid, json.dumps({"online": True, **body}).encode(), _m(minute))
    with services.db.session() as session:
        a, b = (_rollup(session, uid) for uid in uids)
        assert a == b and len(a) == 3
        assert a[T0 + timedelta(hours=1)][4] == 100 - 117  # the latest report's battery, though it came first
        assert a[T0 + timedelta(hours=1)][4] != 100 - 60


def test_the_page_reads_periods_from_the_rollup(org, enrolled):
    """A device online for 70 minutes, silent, then online until a last will, then back online until now."""
    services = org
    uid = enrolled("radio", name="r", site="qs-01")["device"]
    for minute in list(range(0, 71)) + list(range(200, 240)) + list(range(300, 321)):
        assert store_status(services, uid, json.dumps({"online": True, "battery": 50}).encode(), _m(minute))
    assert store_status(services, uid, b'{"online":false}', _m(240))
    with services.db.session() as session:
        week = fleet.status_week(session, uid, _m(-60), _m(322), 600)
    assert week["periods"] == [(_m(0), _m(70)), (_m(200), _m(240)), (_m(300), _m(322))]
    assert [(h["hour"], h["reports"], h["online"]) for h in week["history"]] == \
        [(_m(0), 60, 60), (_m(60), 11, 11), (_m(180), 40, 40), (_m(240), 1, 0), (_m(300), 21, 21)]


def test_old_minute_rows_are_pruned_and_their_hours_kept(org, enrolled):
    services = org
    uid = enrolled("radio", name="r", site="qs-01")["device"]
    now = services.clock()
    for days in (20, 9, 1):
        assert store_status(services, uid, b'{"online":true,"battery":50}', now - timedelta(days=days))
    worker.prune_status_history(services)  # retention: 8 days by default
    with services.db.session() as session:
        left = session.scalars(select(DeviceStatusHistory.at).where(DeviceStatusHistory.device_uid == uid)).all()
        assert left == [now - timedelta(days=1)]
        assert len(_rollup(session, uid)) == 3
