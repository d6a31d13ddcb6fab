"""A synthetic county with millions of device events, built fast, for the benchmarks (bench/report.py, console pages).

``build(services, spec, events)`` writes a county (townships, sites, members with some branch secretaries, one
terminal per site, radios held by members, lessons with renditions, a published 2026-Q4 programme), then EVENTS
device events: every terminal reports the same calendar at any size (six classes with check-ins, a daily broadcast,
the plays in finer progress steps when there are more events), and the radios send the rest (sittings of random
lessons, replays). The same SPEC and seed give the same county and the same events.

Why it is fast and still what ingest would have stored: ingest's own pieces do the work (``parse_event``, the card
token redaction, ``attendance.attribute``, ``ingest._rows``, ``attendance.fold_batch`` and ``attendance.write``), but
each device's events are written in one go (one multi-row insert, one fold, one merge of the aggregates) instead of
one transaction per batch of 200. Attendance folding is order- and batch-independent by design (``fold``'s docstring;
``tests/server/test_attendance_rebuild.py``), so the aggregates are the ones batches would give;
``tests/bench/test_county_data.py`` checks that a small county built here and through ``store_in`` batch by batch
gives the same participation, study-hours and logbook reports and the same aggregate rows. Each device's
``device_sequences`` row and retained ack are those its last batch would leave (the ack's version counter is 1, where
batches would have bumped it once per batch).

    from bench.county_data import CountySpec, build
    spec = CountySpec.for_size(members=10_000, sites=200, devices=2_000)
    county = build(services, spec, events=5_000_000)             # services on SQLite or PostgreSQL

Or from the command line (a data directory, optionally a PostgreSQL URL):

    .venv/bin/python bench/county_data.py /tmp/county --members 10000 --sites 200 --devices 2000 --events 5000000
    .venv/bin/python bench/county_data.py /tmp/county --database-url postgresql+psycopg://localhost/lc_bench ...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator, Optional

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, select  # noqa: E402

from playlists import topics  # noqa: E402
from server.attendance import fold as attendance  # noqa: E402
from server.attendance.models import BroadcastDay  # noqa: E402
from server.db import upsert_insert  # noqa: E402
from server.devices.models import Device, DeviceAssignment  # noqa: E402
from server.events import ingest  # noqa: E402
from server.events.batches import ack_payload, parse_event  # noqa: E402
from server.events.models import DeviceSequence, DeviceStatus  # noqa: E402
from server.lessons.models import Lesson, Rendition  # noqa: E402
from server.messaging.models import RetainedMessage  # noqa: E402
from server.org.models import Member, Site, Township  # noqa: E402
from server.programmes.models import Programme, ProgrammeItem  # noqa: E402
from server.training.models import MemberRole  # noqa: E402

Q4 = datetime(2026, 10, 1, tzinfo=timezone.utc)
RECEIVED = datetime(2027, 1, 5, tzinfo=timezone.utc)
T_ENROL = datetime(2026, 9, 1, tzinfo=timezone.utc)
CLASS_TIMES = [Q4 + timedelta(days=d, hours=11) for d in (9, 23, 37, 51, 65, 79)]  # 19:00 local, fortnightly
CHECKINS_PER_CLASS = 12


@dataclass(frozen=True)
class CountySpec:
    """The county's shape. Devices = one terminal per site + radios_per_site radios per site."""

    townships: int = 10
    sites_per_township: int = 20
    members_per_site: int = 50
    radios_per_site: int = 20
    lessons: int = 6
    durations: tuple[float, ...] = (900.0, 1200.0, 1500.0, 1800.0)
    secretary_every: int = 25  # every 25th member of a site is a branch secretary (quota 56) from 2026-01-01
    programme: str = "2026-Q4"
    seed: int = 7

    @classmethod
    def for_size(cls, *, members: int = 10_000, sites: int = 200, devices: Optional[int] = None,
                 townships: Optional[int] = None, **kw) -> "CountySpec":
        """A spec of about MEMBERS members over SITES sites (spread over TOWNSHIPS, default sites / 20) with
        DEVICES devices in all (one terminal a site, the rest radios; default 20 radios a site)."""
        townships = townships or max(1, sites // 20)
        if sites % townships:
            raise ValueError(f"{sites} sites do not divide into {townships} townships")
        per_site = max(1, members // sites)
        radios = 20 if devices is None else max(0, devices // sites - 1)
        if radios > per_site:
            raise ValueError(f"{radios} radios a site, but only {per_site} members a site to hold them")
        return cls(townships=townships, sites_per_township=sites // townships, members_per_site=per_site,
                   radios_per_site=radios, **kw)

    @property
    def sites(self) -> int:
        return self.townships * self.sites_per_township

    @property
    def members(self) -> int:
        return self.sites * self.members_per_site

    @property
    def devices(self) -> int:
        return self.sites * (1 + self.radios_per_site)


@dataclass
class County:
    """What was built: ids for writing events and checking results."""

    spec: CountySpec
    sites: list[tuple[int, str]] = field(default_factory=list)  # (id, code)
    members: list[tuple[int, str, int]] = field(default_factory=list)  # (id, member_no, site id)
    radios: list[tuple[str, int]] = field(default_factory=list)  # (uid, member id)
    terminals: list[tuple[str, int]] = field(default_factory=list)  # (uid, site id)
    lessons: list[tuple[int, str, float]] = field(default_factory=list)  # (lesson id, sha256, duration)
    events: int = 0

    @property
    def programme(self) -> str:
        return self.spec.programme


# ---------------------------------------------------------------------------------------------------------------
# The county's registry


def _chunks(rows: list, size: int = 5000) -> Iterator[list]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def write_county(services, spec: CountySpec) -> County:
    """Write SPEC's townships, sites, members, roles, devices, lessons and programme with multi-row inserts, into an
    instance without any of them; return their ids. Names follow tests/attendance_data.py's build_county."""
    county = County(spec)
    now = T_ENROL
    with services.db.session() as session:
        session.execute(insert(Township), [{"code": f"t{t:02d}", "name": f"镇{t:02d}"} for t in range(spec.townships)])
        towns = dict(session.execute(select(Township.code, Township.id)).all())
        session.execute(insert(Site), [{"code": f"t{t:02d}-s{s:02d}", "name": f"村{t:02d}{s:02d}",
                                        "township_id": towns[f"t{t:02d}"]}
                                       for t in range(spec.townships) for s in range(spec.sites_per_township)])
        county.sites = [tuple(r) for r in session.execute(select(Site.id, Site.code).order_by(Site.code))]
        rows = [{"member_no": f"M{code[1:3]}{code[-2:]}{m:04d}", "name": f"党员{code}-{m}", "site_id": site_id,
                 "branch": "", "updated_at": now, "flags": []}
                for site_id, code in county.sites for m in range(spec.members_per_site)]
        for chunk in _chunks(rows):
            session.execute(insert(Member), chunk)
        county.members = [tuple(r) for r in session.execute(
            select(Member.id, Member.member_no, Member.site_id).order_by(Member.site_id, Member.member_no))]
        by_site: dict[int, list[tuple[int, str]]] = {}
        for mid, no, site_id in county.members:
            by_site.setdefault(site_id, []).append((mid, no))
        if spec.secretary_every:
            roles = [{"member_id": mid, "role": "secretary", "from_date": date(2026, 1, 1)}
                     for members in by_site.values() for n, (mid, _no) in enumerate(members)
                     if n % spec.secretary_every == 0]
            for chunk in _chunks(roles):
                session.execute(insert(MemberRole), chunk)
        device = {"name": "radio", "kind": "radio", "state": "enrolled", "created_at": now, "enrolled_at": now,
                  "first_enrolled_at": now, "settings": {}, "language": "cmn"}
        devices = []
        for site_id, code in county.sites:
            devices += [dict(device, uid=f"r-{code}-{m:03d}", site_id=site_id) for m in range(spec.radios_per_site)]
            devices.append(dict(device, uid=f"term-{code}", name="terminal", kind="terminal", site_id=site_id))
        for chunk in _chunks(devices):
            session.execute(insert(Device), chunk)
        ids = dict(session.execute(select(Device.uid, Device.id)).all())
        holders = []
        for site_id, code in county.sites:
            for m in range(spec.radios_per_site):
                uid, member_id = f"r-{code}-{m:03d}", by_site[site_id][m][0]
                holders.append({"device_id": ids[uid], "member_id": member_id, "from_date": date(2026, 1, 1)})
                county.radios.append((uid, member_id))
            county.terminals.append((f"term-{code}", site_id))
        for chunk in _chunks(holders):
            session.execute(insert(DeviceAssignment), chunk)
        prog = Programme(code=spec.programme, version=1, title="第四季度", valid_from=date(2026, 10, 1),
                         valid_until=date(2026, 12, 31), slots=[], state="published", created_at=now,
                         published_at=now, published_by="bench")
        session.add(prog)
        session.flush()
        for n in range(spec.lessons):
            lesson = Lesson(title=f"第{n + 1}课", language="cmn", state="ready", created_at=now, updated_at=now)
            session.add(lesson)
            session.flush()
            duration = spec.durations[n % len(spec.durations)]
            sha = hashlib.sha256(f"{spec.programme}-{n}".encode()).hexdigest()
            session.add(Rendition(lesson_id=lesson.id, profile="radio-opus", state="ready", extension="opus",
                                  sha256=sha, size_bytes=1000, duration_s=duration, updated_at=now))
            session.add(ProgrammeItem(programme_id=prog.id, position=n, lesson_id=lesson.id, mandatory=True,
                                      groups=[], variant_lesson_ids=[]))
            county.lessons.append((lesson.id, sha, duration))
    return county


# ---------------------------------------------------------------------------------------------------------------
# The events devices send (bodies as the agent writes them: device_agent/events.py, via tests/attendance_data.py)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _play(at: datetime, programme: str, lesson: int, sha: str, start: float, end: float, play_id: str,
          trigger: str = "key", slot_kind: Optional[str] = None) -> dict:
    stamp = at.isoformat()
    body = {"type": "play", "phase": "progress", "play_id": play_id, "programme": programme, "lesson": lesson,
            "sha256": sha, "start_position": round(start, 2), "end_position": round(end, 2),
            "listened_seconds": round(max(0.0, end - start), 2), "volume": 70, "muted": False, "trigger": trigger,
            "started_at": stamp, "device_time": stamp, "time": stamp, "clock_offset": 0.0}
    if slot_kind:
        body["slot_kind"] = slot_kind
    return body


def _checkin(at: datetime, credential: str) -> dict:
    stamp = at.isoformat()
    return {"type": "checkin", "method": "card", "credential": credential, "device_time": stamp, "time": stamp,
            "clock_offset": 0.0}


def _numbered(bodies: list[dict], rng: random.Random) -> list[dict]:
    return [dict(b, id=_uuid(rng), seq=n, epoch=1) for n, b in enumerate(bodies, 1)]


def calendar_events(spec: CountySpec) -> int:
    """Events of the smallest report of a terminal's calendar: check-ins and one event per play."""
    return len(CLASS_TIMES) * (min(spec.members_per_site, CHECKINS_PER_CLASS) + 1) + 92


def radio_events(county: County, rng: random.Random, count: int) -> list[dict]:
    """COUNT numbered play events of a radio: sittings of random lessons in 2026-Q4, some from the middle."""
    bodies: list[dict] = []
    while len(bodies) < count:
        lesson, sha, duration = rng.choice(county.lessons)
        at = Q4 + timedelta(days=rng.uniform(0, 90), hours=rng.uniform(0, 14))
        play_id, pos = _uuid(rng), rng.choice([0.0, rng.uniform(0, duration)])
        while pos < duration and len(bodies) < count:
            step = rng.uniform(30, 120)
            at += timedelta(seconds=step)
            bodies.append(_play(at, county.programme, lesson, sha, pos, min(duration, pos + step), play_id))
            pos += step
    return _numbered(bodies, rng)


def terminal_events(county: County, site_id: int, members: list[str], rng: random.Random, count: int) -> list[dict]:
    """A terminal's quarter: six classes (check-ins, then the lesson) and a daily broadcast; COUNT only decides how
    finely the plays are reported."""
    occasions = [(at, "key", None) for at in CLASS_TIMES]
    occasions += [(Q4 + timedelta(days=d, hours=-1), "schedule", "broadcast") for d in range(92)]  # 07:00 local
    k = min(len(members), CHECKINS_PER_CLASS)
    per_play = max(1, (count - len(CLASS_TIMES) * k) // len(occasions))
    bodies: list[dict] = []
    for n, (at, trigger, slot) in enumerate(occasions):
        lesson, sha, duration = county.lessons[n % len(county.lessons)]
        play_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{site_id}/{n}"))
        if trigger == "key":
            bodies += [_checkin(at - timedelta(minutes=rng.uniform(0, 20)), m) for m in rng.sample(members, k=k)]
        step = duration / per_play
        for j in range(per_play):
            bodies.append(_play(at + timedelta(seconds=step * (j + 1)), county.programme, lesson, sha, step * j,
                                step * (j + 1), play_id, trigger=trigger, slot_kind=slot))
    return _numbered(bodies, rng)


def device_events(county: County, total: int) -> Iterator[tuple[str, list[dict]]]:
    """(device uid, its numbered events) for every device, TOTAL events in all, the same for the same county and
    seed. Terminals first (each its calendar, at least a tenth of TOTAL between them), then the radios."""
    spec = county.spec
    rng = random.Random(spec.seed)
    numbers: dict[int, list[str]] = {}
    for _id, no, site in county.members:
        numbers.setdefault(site, []).append(no)
    per_terminal = max(calendar_events(spec), total // 10 // max(1, len(county.terminals)))
    terminal_total = 0
    for uid, site in county.terminals:
        raw = terminal_events(county, site, numbers[site], rng, per_terminal)
        terminal_total += len(raw)
        yield uid, raw
    radio_total = total - terminal_total
    if county.radios and radio_total < len(county.radios):
        raise ValueError(f"{total:,} events are too few for this county's calendar; give at least "
                         f"{terminal_total + len(county.radios):,}")
    if not county.radios:
        return
    per_radio, extra = divmod(radio_total, len(county.radios))
    for n, (uid, _member) in enumerate(county.radios):
        yield uid, radio_events(county, rng, per_radio + (1 if n < extra else 0))


# ---------------------------------------------------------------------------------------------------------------
# Storing a device's events in one go


def store_device(session, uid: str, raw: list[dict], received_at: datetime, rules, lookups,
                 pending: "Pending") -> int:
    """Store RAW (numbered 1..n, epoch 1, none stored before) of device UID in SESSION as ingest would, in one go:
    the event rows now, the attendance they fold into now or (a radio's lesson coverage, which no other device's
    events touch) merged into PENDING, written by ``Pending.write`` with the device's sequence row and retained ack."""
    events = [parse_event(r, "event") for r in raw]
    facts = lookups.device(session, uid)
    events = ingest._without_card_tokens(session, events, rules.card_key)
    attributed = attendance.attribute(events, received_at, facts, rules)
    rows = ingest._rows(uid, 1, events, attributed, received_at)
    if session.get_bind().dialect.name == "sqlite":
        ingest._insert_rows(session, rows)
    else:
        _copy_events(session, rows)
    delta = attendance.fold_batch(session, facts, attributed, lookups, rules)
    if delta is not None:
        pending.add_broadcast(delta.broadcast)
        delta.broadcast = {}
        if delta.sessions or delta.checkins:
            attendance.write(session, delta, uid, rules)
        else:
            pending.add_coverage(delta.coverage)
            if delta.exclusions:
                attendance.write(session, attendance.Delta(exclusions=delta.exclusions), uid, rules)
    last = max((e.seq_last for e in events), default=0)
    pending.sequences.append({
        "device_uid": uid, "epoch": 1, "acked": last, "updated_at": received_at, "stored_max": last,
        "events": len(events), "duplicates": 0, "quarantined": 0, "rejected": 0,
        "clock_flagged": sum(1 for a in attributed if a.flag is not None),
        "last_event_at": received_at if events else None})
    # What retained.put makes of a topic it has not seen: version 1, not sent yet.
    pending.acks.append({"topic": topics.ack(uid), "payload": ack_payload(1, last), "version": 1,
                         "sent_version": 0, "updated_at": received_at})
    return len(events)


@dataclass
class Pending:
    """What several devices add that can be written together: lesson coverage (keyed by member, so radios never
    share a row unless one member holds two), sequence rows and retained acks."""

    coverage: dict = field(default_factory=dict)
    broadcast: dict = field(default_factory=dict)
    sequences: list = field(default_factory=list)
    acks: list = field(default_factory=list)

    def add_coverage(self, coverage: dict) -> None:
        for key, cov in coverage.items():
            known = self.coverage.get(key)
            if known is None:
                self.coverage[key] = cov
                continue
            known.stretches.extend(cov.stretches)
            known.first_at, known.last_at = min(known.first_at, cov.first_at), max(known.last_at, cov.last_at)
            known.events += cov.events
            known.clock_flagged += cov.clock_flagged

    def add_broadcast(self, broadcast: dict) -> None:
        for key, (plays, listened) in broadcast.items():
            entry = self.broadcast.setdefault(key, [0, 0])
            entry[0] += plays
            entry[1] += listened

    def write(self, session, rules) -> None:
        keys = sorted(self.coverage)
        for start in range(0, len(keys), 500):
            attendance.write(session, attendance.Delta(coverage={k: self.coverage[k] for k in keys[start:start + 500]}),
                             "", rules)
        if self.broadcast:  # attendance.write's upsert, executed once for all rows instead of once a row
            stmt = upsert_insert(session)(BroadcastDay.__table__)
            stmt = stmt.on_conflict_do_update(
                index_elements=["site_id", "day", "programme", "lesson_id"],
                set_={"plays": BroadcastDay.plays + stmt.excluded.plays,
                      "listened_cs": BroadcastDay.listened_cs + stmt.excluded.listened_cs})
            session.connection().execute(stmt, [
                {"site_id": site, "day": day, "programme": programme, "lesson_id": lesson, "plays": plays,
                 "listened_cs": listened}
                for (site, day, programme, lesson), (plays, listened) in sorted(self.broadcast.items())])
        for chunk in _chunks(self.sequences):
            session.execute(insert(DeviceSequence), chunk)
        for chunk in _chunks(self.acks):
            session.execute(insert(RetainedMessage), chunk)
        self.coverage, self.broadcast, self.sequences, self.acks = {}, {}, [], []


def _copy_events(session, rows: list[tuple]) -> None:
    """PostgreSQL: ingest's rows (the JSON and the times as text, which the columns' types read) through COPY
    (psycopg 3), several times faster than INSERT for millions of rows."""
    cursor = session.connection().connection.driver_connection.cursor()
    with cursor.copy(f"COPY device_events ({', '.join(ingest._EVENT_COLUMNS)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def write_statuses(services, county: County, at: datetime = RECEIVED) -> None:
    """A last status for every device (the fleet table), with the columns ingest copies from it (fleet_columns)."""
    rows = []
    for n, (uid, _x) in enumerate([*county.terminals, *county.radios]):
        body = {"online": n % 10 != 0, "battery": 40 + n % 60, "storage_free_mb": 500 + n % 3000,
                "firmware": "1.4.2", "agent_version": "0.9.0", "manifest_version": 3, "sync": "idle",
                "stale": False, "queue": n % 5}
        rows.append({"device_uid": uid, "body": body, "online": body["online"], "received_at": at,
                     **ingest.fleet_columns(body)})
    with services.db.session() as session:
        for chunk in _chunks(rows):
            session.execute(insert(DeviceStatus), chunk)


def _prefetch_devices(session, lookups) -> None:
    """Fill LOOKUPS' device cache with every device's facts in two queries, as ``Lookups.device`` would one device at a
    time with two queries each (a sixth of a build's time)."""
    held: dict[int, list[tuple]] = {}
    for device_id, since, until, member in session.execute(
            select(DeviceAssignment.device_id, DeviceAssignment.from_date, DeviceAssignment.until_date,
                   DeviceAssignment.member_id).order_by(DeviceAssignment.device_id, DeviceAssignment.from_date)):
        held.setdefault(device_id, []).append((since, until, member))
    for device_id, uid, kind, site_id, first in session.execute(
            select(Device.id, Device.uid, Device.kind, Device.site_id, Device.first_enrolled_at)):
        lookups._devices[uid] = (lookups.monotonic(), attendance.DeviceFacts(uid, kind, site_id, first,
                                                                             tuple(held.get(device_id, ()))))


def store_events(services, county: County, total: int, *, received_at: datetime = RECEIVED,
                 per_transaction: int = 100_000, progress: Optional[Callable[[int, int], None]] = None) -> int:
    """Write TOTAL events of COUNTY's devices (``device_events``) with their attendance; return how many. One
    transaction per PER_TRANSACTION events or so."""
    rules = services.rules
    lookups = attendance.Lookups(ttl_s=3600)
    with services.db.session() as session:
        _prefetch_devices(session, lookups)
    done = 0
    devices = device_events(county, total)
    more = True
    while more:
        with services.db.session() as session:
            pending, stored = Pending(), 0
            for uid, raw in devices:
                stored += store_device(session, uid, raw, received_at, rules, lookups, pending)
                if stored >= per_transaction:
                    break
            else:
                more = False
            pending.write(session, rules)
        done += stored
        if progress is not None:
            progress(done, total)
    county.events = done
    return done


def build(services, spec: CountySpec, events: int, *, statuses: bool = True, received_at: datetime = RECEIVED,
          progress: Optional[Callable[[int, int], None]] = None) -> County:
    """Write SPEC's county and EVENTS device events (with the aggregates ingest keeps) into SERVICES' database,
    which must hold no county yet (``initialise`` may have run); with STATUSES, a last status for every device."""
    county = write_county(services, spec)
    store_events(services, county, events, received_at=received_at, progress=progress)
    if statuses:
        write_statuses(services, county, received_at)
    return county


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--database-url", default="", help="default: SQLite in DATA_DIR")
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--sites", type=int, default=200)
    parser.add_argument("--devices", type=int, default=None, help="default: 21 a site (20 radios, a terminal)")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    from server.services import Services
    from server import settings as settings_mod
    from server.instance import initialise

    args.data_dir.mkdir(parents=True, exist_ok=True)
    overrides = {"data_dir": str(args.data_dir)}
    if args.database_url:
        overrides["database_url"] = args.database_url
    services = Services(settings_mod.load(environ={}, overrides=overrides))
    initialise(services)
    spec = CountySpec.for_size(members=args.members, sites=args.sites, devices=args.devices, seed=args.seed)
    started = time.perf_counter()
    county = build(services, spec, args.events, progress=lambda d, t: print(
        f"  {d:,} of {t:,} events ({d / (time.perf_counter() - started):,.0f}/s)", file=sys.stderr))
    print(json.dumps({"members": spec.members, "sites": spec.sites, "devices": spec.devices,
                      "events": county.events, "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
