"""A county with members, radios, terminals, lessons and a published programme, written straight into the database,
and the play and check-in events its devices would send. Used by the attendance tests and by bench/report.py.

Events go through ``server.events.ingest.store_in``, the same path as MQTT batches, so aggregates are built the real
way.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Iterable, Optional

from server.devices.models import Device, DeviceAssignment
from server.events.batches import Event
from server.lessons.models import Lesson, Rendition
from server.org.models import Member, Site, Township
from server.programmes.models import Programme, ProgrammeItem

T_ENROL = datetime(2026, 9, 1, tzinfo=timezone.utc)


@dataclass
class County:
    """What build_county made: ids for writing events and for checking results."""

    sites: list[tuple[int, str]] = field(default_factory=list)  # (id, code)
    members: list[tuple[int, str, int]] = field(default_factory=list)  # (id, member_no, site id)
    radios: list[tuple[str, int]] = field(default_factory=list)  # (uid, member id)
    terminals: list[tuple[str, int]] = field(default_factory=list)  # (uid, site id)
    lessons: list[tuple[int, str, float]] = field(default_factory=list)  # (lesson id, sha256, duration)
    programme: str = "2026-Q4"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def build_county(services, *, townships: int = 2, sites_per_township: int = 3, members_per_site: int = 10,
                 radios_per_site: int = 5, lessons: int = 4, durations: Iterable[float] = (600.0,),
                 programme: str = "2026-Q4", valid: tuple[date, date] = (date(2026, 10, 1), date(2026, 12, 31)),
                 joined: Optional[date] = None) -> County:
    """Write a county: townships, sites, members, radios held by the first members of each site, one terminal per
    site, LESSONS lessons with one rendition each, and a published programme whose items are all mandatory."""
    county = County(programme=programme)
    now = T_ENROL
    durations = list(durations)
    with services.db.session() as session:
        for t in range(townships):
            town = Township(code=f"t{t:02d}", name=f"镇{t:02d}")
            session.add(town)
            session.flush()
            for s in range(sites_per_township):
                site = Site(code=f"t{t:02d}-s{s:02d}", name=f"村{t:02d}{s:02d}", township_id=town.id)
                session.add(site)
                session.flush()
                county.sites.append((site.id, site.code))
                for m in range(members_per_site):
                    member = Member(member_no=f"M{t:02d}{s:02d}{m:04d}", name=f"党员{t}{s}{m}", site_id=site.id,
                                    branch="", joined_on=joined, updated_at=now, flags=[])
                    session.add(member)
                    session.flush()
                    county.members.append((member.id, member.member_no, site.id))
                    if m < radios_per_site:
                        radio = Device(uid=f"r-{site.code}-{m:03d}", name="radio", kind="radio", site_id=site.id,
                                       state="enrolled", created_at=now, enrolled_at=now, first_enrolled_at=now,
                                       settings={})
                        session.add(radio)
                        session.flush()
                        session.add(DeviceAssignment(device_id=radio.id, member_id=member.id,
                                                     from_date=date(2026, 1, 1)))
                        county.radios.append((radio.uid, member.id))
                terminal = Device(uid=f"term-{site.code}", name="terminal", kind="terminal", site_id=site.id,
                                  state="enrolled", created_at=now, enrolled_at=now, first_enrolled_at=now,
                                  settings={})
                session.add(terminal)
                county.terminals.append((terminal.uid, site.id))
        prog = Programme(code=programme, version=1, title="第四季度", valid_from=valid[0], valid_until=valid[1],
                         slots=[], state="published", created_at=now, published_at=now, published_by="test")
        session.add(prog)
        session.flush()
        for n in range(lessons):
            lesson = Lesson(title=f"第{n + 1}课", language="cmn", state="ready", created_at=now, updated_at=now)
            session.add(lesson)
            session.flush()
            duration = durations[n % len(durations)]
            sha = _sha(f"{programme}-{n}")
            session.add(Rendition(lesson_id=lesson.id, profile="radio-opus", state="ready", extension="opus",
                                  sha256=sha, size_bytes=1000, duration_s=duration, updated_at=now))
            session.add(ProgrammeItem(programme_id=prog.id, position=n, lesson_id=lesson.id, mandatory=True,
                                      groups=[], variant_lesson_ids=[]))
            county.lessons.append((lesson.id, sha, duration))
    return county


def add_members(services, county: County, per_site: int, *, batch: int = 5000) -> int:
    """Add PER_SITE more members (no devices) to every site of COUNTY with bulk inserts, for counties of 100,000
    members built in seconds; return how many."""
    from sqlalchemy import insert

    rows = [{"member_no": f"B{site_code}-{m:05d}", "name": f"党员{site_code}{m}", "site_id": site_id, "branch": "",
             "updated_at": T_ENROL, "flags": []}
            for site_id, site_code in county.sites for m in range(per_site)]
    with services.db.session() as session:
        for start in range(0, len(rows), batch):
            session.execute(insert(Member), rows[start:start + batch])
    return len(rows)


def _stamp(at: datetime, offset: float = 0.0) -> dict:
    raw = at - timedelta(seconds=offset)
    return {"device_time": raw.isoformat(), "time": at.isoformat(), "clock_offset": offset}


def play(at: datetime, programme: str, lesson: int, sha: str, start: float, end: float, *, phase: str = "progress",
         play_id: Optional[str] = None, trigger: str = "key", muted: bool = False, volume: int = 70,
         slot_kind: Optional[str] = None, offset: float = 0.0, device_time: Optional[str] = None) -> dict:
    """A play event body as the agent records it (device_agent/events.py)."""
    body = {"type": "play", "phase": phase, "play_id": play_id or str(uuid.uuid4()), "programme": programme,
            "lesson": lesson, "sha256": sha, "start_position": round(start, 2), "end_position": round(end, 2),
            "listened_seconds": round(max(0.0, end - start), 2), "volume": volume, "muted": muted,
            "trigger": trigger, "started_at": at.isoformat(), **_stamp(at, offset)}
    if slot_kind:
        body["slot_kind"] = slot_kind
    if device_time is not None:
        body["device_time"] = device_time
    return body


def checkin(at: datetime, credential: str, method: str = "card") -> dict:
    return {"type": "checkin", "method": method, "credential": credential, **_stamp(at)}


def numbered(bodies: list[dict], first_seq: int = 1) -> list[dict]:
    """BODIES with ids and consecutive sequence numbers, as the outbox gives them."""
    return [dict(b, id=str(uuid.uuid4()), seq=n, epoch=1) for n, b in enumerate(bodies, first_seq)]


def as_events(raw: list[dict]) -> list[Event]:
    from server.events.batches import parse_event

    return [parse_event(r, "event") for r in raw]


def store(services, device: str, raw: list[dict], received_at: datetime, *, batch: int = 200,
          lookups=None) -> None:
    """Store numbered events of DEVICE through ingest's own path, BATCH per transaction."""
    from server.events.ingest import store_in

    events = as_events(raw)
    for start in range(0, len(events), batch):
        chunk = events[start:start + batch]
        with services.db.session() as session:
            store_in(session, device, 1, min(e.seq for e in chunk), max(e.seq_last for e in chunk), chunk, b"", None,
                     received_at, services.rules, lookups)


def random_listening(county: County, rng: random.Random, *, events_per_radio: int, start: datetime,
                     days: int = 80) -> dict[str, list[dict]]:
    """Per radio, EVENTS_PER_RADIO progress events of plays over DAYS days: sittings of random lessons, from
    random positions, some replayed, some muted; numbered and in order."""
    out: dict[str, list[dict]] = {}
    for uid, _member in county.radios:
        bodies = []
        while len(bodies) < events_per_radio:
            lesson, sha, duration = rng.choice(county.lessons)
            at = start + timedelta(days=rng.uniform(0, days), seconds=rng.uniform(0, 3600))
            play_id = str(uuid.uuid4())
            pos = rng.choice([0.0, 0.0, rng.uniform(0, duration)])
            muted = rng.random() < 0.05
            for _ in range(rng.randint(1, 12)):
                step = rng.uniform(20, 90)
                end = min(duration, pos + step)
                at += timedelta(seconds=step)
                bodies.append(play(at, county.programme, lesson, sha, pos, end, play_id=play_id, muted=muted))
                pos = end
                if pos >= duration or len(bodies) >= events_per_radio:
                    break
        out[uid] = numbered(bodies)
    return out
