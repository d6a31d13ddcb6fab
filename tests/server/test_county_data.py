"""bench/county_data.py stores a device's events in one go; the benchmarks are only worth something if that stores
exactly what ingest stores batch by batch. A small county's events go through ``store_in`` in batches of 50 (the
normal path), every report and aggregate is captured, the events and everything derived from them are deleted, and
the same events are written again by the bulk builder: the participation, study-hours and logbook reports (as JSON,
and every logbook table of every site) and the aggregate rows must be identical. On SQLite and on PostgreSQL (where
the builder uses COPY)."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, func, select

from bench import county_data as cd
from server.accounts.scope import COUNTY
from server.attendance import fold as attendance
from server.attendance import report_export, reports
from server.attendance.models import ClassSession, SessionAttendee
from server.events.models import DeviceEvent, DeviceSequence
from server.messaging.models import RetainedMessage
from server.org.models import Site
from server.training import hours, hours_export, logbooks
from tests import attendance_data as ad

pytestmark = pytest.mark.databases

SPEC = cd.CountySpec(townships=2, sites_per_township=2, members_per_site=14, radios_per_site=4, lessons=3,
                     durations=(1200.0, 1500.0), secretary_every=5, seed=3)
EVENTS = 6_000


def _everything(services) -> dict:
    """What the reports say and what the tables hold, in a comparable form."""
    hrules = hours.hour_rules_from(services.settings)
    site_rules = logbooks.site_rules_from(services.settings)
    out: dict = {}
    with services.db.session() as session:
        report = reports.participation(session, "2026-Q4", services.rules, now=cd.RECEIVED)
        out["participation"] = report_export.render(report_export.tables(report), report_export.report_meta(report),
                                                    "json")[0]
        year = hours.collect(session, 2026, services.rules, hrules, now=cd.RECEIVED)
        out["hours"] = report_export.render(hours_export.tables(year), hours_export.meta(year), "json")[0]
        out["roles"] = sorted((m.member_no, m.role, m.quota) for m in year.members)
        for month in ("2026-10", "2026-11", "2026-12"):
            for code in session.scalars(select(Site.code).order_by(Site.code)):
                tables, _meta = logbooks.logbook(session, code, month, services.rules, hrules, COUNTY)
                out[f"logbook {code} {month}"] = [(t.title, [tuple(r) for r in t.rows]) for t in tables]
            out[f"short {month}"] = [tuple(vars(s).values()) for s in
                                     logbooks.shortfalls(session, month, services.rules, site_rules)]
        out["aggregates"] = attendance.snapshot(session)
        out["events"] = sorted(session.execute(select(
            DeviceEvent.device_uid, DeviceEvent.epoch, DeviceEvent.seq, DeviceEvent.seq_last, DeviceEvent.event_id,
            DeviceEvent.type, DeviceEvent.body, DeviceEvent.device_time, DeviceEvent.received_at, DeviceEvent.at,
            DeviceEvent.clock_flag)).all(), key=lambda r: (r[0], r[2]))
        out["sequences"] = sorted(tuple(r) for r in session.execute(select(
            DeviceSequence.device_uid, DeviceSequence.epoch, DeviceSequence.acked, DeviceSequence.stored_max,
            DeviceSequence.events, DeviceSequence.duplicates, DeviceSequence.quarantined, DeviceSequence.rejected,
            DeviceSequence.clock_flagged, DeviceSequence.last_event_at)))
        out["acks"] = sorted(tuple(r) for r in session.execute(
            select(RetainedMessage.topic, RetainedMessage.payload).where(RetainedMessage.topic.like("%ack%"))))
    return out


def _forget_events(services) -> None:
    with services.db.session() as session:
        for model in (*attendance.DERIVED, DeviceEvent, DeviceSequence):
            session.execute(delete(model))
        session.execute(delete(SessionAttendee).where(SessionAttendee.source == "checkin"))
        session.execute(delete(ClassSession).where(ClassSession.source == "device"))
        session.execute(delete(RetainedMessage).where(RetainedMessage.topic.like("%ack%")))


def test_bulk_builder_stores_what_ingest_stores(services):
    county = cd.write_county(services, SPEC)
    assert (len(county.sites), len(county.members), len(county.radios), len(county.terminals)) == (4, 56, 16, 4)
    stored = 0
    for uid, raw in cd.device_events(county, EVENTS):
        ad.store(services, uid, raw, cd.RECEIVED, batch=50)
        stored += len(raw)
    assert stored == EVENTS
    normal = _everything(services)

    _forget_events(services)
    with services.db.session() as session:
        assert session.scalar(select(func.count()).select_from(DeviceEvent)) == 0
    assert cd.store_events(services, county, EVENTS, per_transaction=1_000) == EVENTS
    bulk = _everything(services)

    # The county is not a trivial one: classes with check-ins, broadcasts, completed lessons, hours, secretaries.
    agg = normal["aggregates"]
    assert len(normal["events"]) == EVENTS
    assert sum(1 for s in agg["sessions"] if s[12]) == 6 * 4  # six classes at each of the 4 sites
    assert 6 * 4 <= len(agg["attendees"]) <= 6 * 4 * 12
    assert agg["broadcast"] and agg["checkins"]
    assert any(row[7] is not None for row in agg["coverage"])  # some lessons completed
    assert sum(1 for _no, role, _q in normal["roles"] if role == "secretary") == 4 * 3
    for key in normal:
        assert bulk[key] == normal[key], key
