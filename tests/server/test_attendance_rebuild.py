"""`lessoncast attendance rebuild` gives exactly the aggregates ingest built batch by batch, on 1,000,000 events.

The events are stored through ingest's own path (``server.events.ingest.store_in``) in shuffled batches with duplicates
and overlaps, as devices that resend and reorder would deliver them. They cover every kind of aggregate: radio
coverage over many sittings (some muted, some outside the window, some with a clock reset to 1970), terminal
sessions with check-ins, class slots, broadcasts, and events attendance cannot count. Then every derived table is
snapshotted, rebuilt from the raw events, and compared row for row.
"""

from __future__ import annotations

import multiprocessing
import random
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from server.attendance import fold as attendance
from server.events.models import DeviceEvent
from tests import attendance_data as ad

pytestmark = [pytest.mark.databases,  # each test runs on SQLite and on PostgreSQL
              pytest.mark.long_running(240)]  # seconds of a worker; see tests/conftest.py

TOTAL = 1_000_000
# On PostgreSQL a twentieth: the same devices, kinds, duplicates and overlaps (what differs between the databases is in
# the statements, not in the volume), within the time make test allows the second database.
TOTAL_ON = {"sqlite": TOTAL, "postgresql": TOTAL // 20}
START = datetime(2026, 10, 1, 1, tzinfo=timezone.utc)
RECEIVED = datetime(2027, 1, 10, tzinfo=timezone.utc)


def _terminal_events(county, uid: str, site_members: list[str], rng: random.Random, count: int) -> list[dict]:
    bodies: list[dict] = []
    while len(bodies) < count:
        lesson, sha, duration = rng.choice(county.lessons)
        at = START + timedelta(days=rng.uniform(0, 90))
        kind = rng.choice(["key", "command", "class", "broadcast"])
        trigger = "schedule" if kind in ("class", "broadcast") else kind
        slot = kind if trigger == "schedule" else None
        for member in rng.sample(site_members, k=min(len(site_members), rng.randint(0, 6))):
            bodies.append(ad.checkin(at + timedelta(minutes=rng.uniform(-40, 40)), member))
        play_id, pos = str(uuid.uuid4()), 0.0
        bodies.append(ad.play(at, county.programme, lesson, sha, 0, 0, phase="started", play_id=play_id,
                              trigger=trigger, slot_kind=slot))
        while pos < duration and len(bodies) < count:
            step = rng.uniform(30, 120)
            at += timedelta(seconds=step)
            bodies.append(ad.play(at, county.programme, lesson, sha, pos, min(duration, pos + step), play_id=play_id,
                                  trigger=trigger, slot_kind=slot, muted=rng.random() < 0.03))
            pos += step
    return ad.numbered(bodies[:count])


def _radio_events(county, rng: random.Random, count: int) -> list[dict]:
    bodies: list[dict] = []
    while len(bodies) < count:
        lesson, sha, duration = rng.choice(county.lessons)
        at = START + timedelta(days=rng.uniform(-20, 130))  # some before the window, some after the grace
        play_id = str(uuid.uuid4())
        pos = rng.choice([0.0, rng.uniform(0, duration)])
        reset = rng.random() < 0.02  # a clock reset to 1970 (flagged, counted at arrival)
        for _ in range(rng.randint(1, 30)):
            step = rng.uniform(10, 90)
            end = min(duration, pos + step)
            at += timedelta(seconds=step)
            bodies.append(ad.play(at, county.programme, lesson, sha, pos, end, play_id=play_id,
                                  muted=rng.random() < 0.02,
                                  device_time=(datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=len(
                                      bodies))).isoformat() if reset else None))
            pos = end if rng.random() < 0.9 else rng.uniform(0, duration)  # now and then a jump back
            if len(bodies) >= count:
                break
    if rng.random() < 0.3:
        bodies[rng.randrange(len(bodies))] = {"type": "play", "phase": "progress", "play_id": "x"}  # unusable
    return ad.numbered(bodies)


def _deliver(services, uid: str, raw: list[dict], rng: random.Random, lookups) -> None:
    """Store RAW in shuffled batches of varied size, with about 5% of batches sent twice and some overlapping."""
    batches, start = [], 0
    while start < len(raw):
        size = rng.randint(200, 1200)
        batches.append(raw[start:start + size])
        start += size
    extra = [b for b in batches if rng.random() < 0.05]
    extra += [raw[max(0, s - 50):s + 50] for s in rng.sample(range(len(raw)), k=2)]
    order = batches + extra
    rng.shuffle(order)
    for batch in order:
        ad.store(services, uid, batch, RECEIVED, batch=len(batch), lookups=lookups)


def _deliver_share(settings, county, members_by_site, plan) -> None:
    """Generate and deliver the events of PLAN's devices, as one ingest process would (run in a child process)."""
    from server.services import Services

    services = Services(settings)
    lookups = attendance.Lookups(ttl_s=3600)
    for n, (uid, kind, site, count) in plan:
        rng = random.Random(20261122 + n)
        raw = _terminal_events(county, uid, members_by_site[site], rng, count) if kind == "terminal" \
            else _radio_events(county, rng, count)
        _deliver(services, uid, raw, rng, lookups)
    services.db.dispose()


@pytest.mark.timeout(1200)  # a million events through ingest's own path take minutes, many more on a busy machine
def test_rebuild_equals_incremental_on_a_million_events(services):
    from server.instance import initialise

    total = TOTAL_ON[services.db.engine.dialect.name]
    initialise(services)
    county = ad.build_county(services, townships=2, sites_per_township=4, members_per_site=12, radios_per_site=8,
                             lessons=6, durations=(600.0, 900.0, 1500.0))
    members_by_site: dict[int, list[str]] = {}
    for _mid, no, site in county.members:
        members_by_site.setdefault(site, []).append(no)
    devices = [(uid, "radio", None) for uid, _m in county.radios] + \
              [(uid, "terminal", site) for uid, site in county.terminals]
    per_device = total // len(devices)
    counts = [per_device + (1 if n < total - per_device * len(devices) else 0) for n in range(len(devices))]
    plan = [(n, (uid, kind, site, count)) for n, ((uid, kind, site), count) in enumerate(zip(devices, counts))]
    # Two processes deliver half the devices each, as two ingest processes share a county's devices (and the
    # test uses both cores); each device's events come from its own seed, so the data set is the same every run.
    services.db.dispose()
    context = multiprocessing.get_context("fork")
    child = context.Process(target=_deliver_share, args=(services.settings, county, members_by_site, plan[1::2]))
    child.start()
    try:
        _deliver_share(services.settings, county, members_by_site, plan[0::2])
    finally:
        child.join()
    assert child.exitcode == 0, "the second delivering process failed"

    with services.db.session() as session:
        assert session.scalar(select(func.count()).select_from(DeviceEvent)) == total
        incremental = attendance.snapshot(session)
    # Every kind of aggregate is exercised, not just an empty table compared with an empty table.
    assert all(incremental[name] for name in ("coverage", "sessions", "attendees", "checkins", "broadcast",
                                              "exclusions")), {k: len(v) for k, v in incremental.items()}
    assert any(row[7] is not None for row in incremental["coverage"]), "no lesson was completed"
    assert any(row[-1] for row in incremental["coverage"]), "no clock-flagged coverage"
    assert {row[1] for row in incremental["exclusions"]} >= {"muted", "outside_window", "play_without_lesson"}

    result = attendance.rebuild(services)
    assert result["events"] == total
    with services.db.session() as session:
        rebuilt = attendance.snapshot(session)
    for name in incremental:
        assert rebuilt[name] == incremental[name], f"{name}: the rebuild differs from what ingest built"
