"""Attendance aggregates: ingest folds each batch's new events into them in the batch's own transaction, and
``rebuild`` recomputes them from every stored event with the same code.

The split: ``attendance_rules`` decides (pure); ``fold`` turns events into a ``Delta`` (pure, given what it looked
up); ``write`` merges a Delta into the tables. Every merge is order-independent, so batches arriving in any order,
twice, or all at once in a rebuild give the same rows; ``tests/server/test_attendance_rebuild.py`` checks it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Iterable, NamedTuple, Optional, Sequence

from sqlalchemy import delete, func, or_, select, tuple_, update
from sqlalchemy.orm import Session

from server.attendance import marks, rules as rules_mod
from server.attendance.models import (AttendanceExclusion, BroadcastDay, Checkin, ClassSession, LessonCoverage,
                                      SessionAttendee)
from server.attendance.rules import Rules, SessionFacts, Window
from server.db import upsert_insert
from server.devices.models import Device, DeviceAssignment
from server.events.models import DeviceEvent
from server.lessons.models import Rendition
from server.org import cards
from server.org.models import Member
from server.programmes.models import Programme

log = logging.getLogger(__name__)

CACHE_TTL_S = 30.0


# ---------------------------------------------------------------------------------------------------------------
# What fold needs to know, looked up once per batch (or cached by a long-running ingest)


@dataclass(frozen=True)
class DeviceFacts:
    """The device an event batch came from, as attendance sees it."""

    uid: str
    kind: str
    site_id: int
    first_enrolled_at: Optional[datetime]
    assignments: tuple[tuple[date, Optional[date], int], ...]


class Lookups:
    """Devices, rendition durations and programme windows, cached for CACHE_TTL_S (0: looked up every time).

    Ingest keeps one for its life, so a batch costs no lookups; staff changes (a radio handed to someone else, a
    programme's new version) reach it within the TTL, and ``lessoncast attendance rebuild`` applies them to the past.
    """

    def __init__(self, ttl_s: float = 0.0, monotonic=time.monotonic):
        self.ttl_s = ttl_s
        self.monotonic = monotonic
        self._devices: dict[str, tuple[float, Optional[DeviceFacts]]] = {}
        self._durations: dict[str, Optional[float]] = {}
        self._windows: tuple[float, dict[str, Window]] = (-1e18, {})

    def _fresh(self, loaded: float) -> bool:
        return self.ttl_s > 0 and self.monotonic() - loaded < self.ttl_s

    def device(self, session: Session, uid: str) -> Optional[DeviceFacts]:
        cached = self._devices.get(uid)
        if cached is not None and self._fresh(cached[0]):
            return cached[1]
        row = session.execute(select(Device.id, Device.kind, Device.site_id, Device.first_enrolled_at)
                              .where(Device.uid == uid)).first()
        facts = None
        if row is not None:
            held = session.execute(select(DeviceAssignment.from_date, DeviceAssignment.until_date,
                                          DeviceAssignment.member_id)
                                   .where(DeviceAssignment.device_id == row.id)
                                   .order_by(DeviceAssignment.from_date)).all()
            facts = DeviceFacts(uid, row.kind, row.site_id, row.first_enrolled_at, tuple(tuple(h) for h in held))
        self._devices[uid] = (self.monotonic(), facts)
        return facts

    def durations(self, session: Session, shas: Iterable[str]) -> dict[str, Optional[float]]:
        # Content-addressed: a sha256's duration never changes, so these are cached for good.
        missing = [s for s in set(shas) if s not in self._durations]
        if missing:
            found = dict(session.execute(select(Rendition.sha256, Rendition.duration_s)
                                         .where(Rendition.sha256.in_(missing))).all())
            for sha in missing:
                self._durations[sha] = found.get(sha)
        return {s: self._durations.get(s) for s in set(shas)}

    def windows(self, session: Session) -> dict[str, Window]:
        """Each programme code's window: that of its newest published (or superseded) version."""
        loaded, windows = self._windows
        if self._fresh(loaded):
            return windows
        rows = session.execute(select(Programme.code, Programme.version, Programme.valid_from, Programme.valid_until)
                               .where(Programme.state != "draft").order_by(Programme.code, Programme.version)).all()
        windows = {code: Window(start, until) for code, _v, start, until in rows}
        self._windows = (self.monotonic(), windows)
        return windows


# ---------------------------------------------------------------------------------------------------------------
# Folding events into a delta (pure)


@dataclass
class CoverageDelta:
    duration_s: float
    stretches: list = field(default_factory=list)  # [start, end, time]: attendance_rules.envelope makes segments
    first_at: Optional[datetime] = None
    last_at: Optional[datetime] = None
    events: int = 0
    clock_flagged: int = 0

    @property
    def segments(self) -> list:
        """The stretches as canonical segments (attendance_rules.envelope)."""
        return rules_mod.envelope(self.stretches)


@dataclass
class Delta:
    """What a set of events adds to the aggregates."""

    coverage: dict[tuple[int, str, int, str], CoverageDelta] = field(default_factory=dict)
    sessions: dict[str, tuple[str, int, str, SessionFacts]] = field(default_factory=dict)
    broadcast: dict[tuple[int, date, str, int], list] = field(default_factory=dict)
    checkins: list[dict[str, Any]] = field(default_factory=list)
    exclusions: dict[str, list] = field(default_factory=dict)

    def exclude(self, reason: str, event_id: str) -> None:
        entry = self.exclusions.setdefault(reason, [0, ""])
        entry[0] += 1
        entry[1] = max(entry[1], event_id)


class Attributed(NamedTuple):
    """An event with its attributed time (corrected, or arrival) and clock flag."""

    event_id: str
    type: str
    body: dict
    at: datetime
    flag: Optional[str]


def attribute(events, received_at: datetime, device: Optional[DeviceFacts], rules: Rules) -> list[Attributed]:
    """Each event (with ``event_id``, ``type`` and ``body``) with its attributed time and flag."""
    enrolled = device.first_enrolled_at if device is not None else None
    bounds = rules_mod.clock_bounds(received_at, enrolled, rules)
    judge, unset = rules_mod.attributed_time, rules_mod._UNSET
    return [Attributed(e.event_id, e.type, e.body,
                       *judge(e.body, received_at, enrolled, rules, getattr(e, "device_time", unset), bounds))
            for e in events]


def fold(delta: Delta, device: DeviceFacts, events: Sequence[Attributed], durations: dict[str, Optional[float]],
         windows: dict[str, Window], rules: Rules) -> Delta:
    """Add EVENTS (new ones only: a duplicate must never be folded twice) of DEVICE to DELTA."""
    for e in events:
        if e.type == "checkin":
            method, credential = e.body.get("method"), e.body.get("credential")
            if not isinstance(credential, str) or not credential.strip():
                delta.exclude("checkin_without_credential", e.event_id)
                continue
            delta.checkins.append({"device_uid": device.uid, "event_id": e.event_id, "site_id": device.site_id,
                                   "at": e.at, "method": str(method or "")[:16],
                                   "credential": credential.strip()[:128], "clock_flagged": e.flag is not None})
            continue
        if e.type != "play":
            continue
        play, why = rules_mod.read_play(e.body)
        if play is None:
            delta.exclude(why, e.event_id)
            continue
        use = rules_mod.play_use(device.kind, play)
        flagged = 1 if e.flag is not None else 0
        if use == "coverage":
            _fold_coverage(delta, device, e, play, flagged, durations, windows, rules)
        elif use == "session":
            key = f"dev:{device.uid}:{play.play_id}"
            t = rules_mod.to_epoch(e.at)
            facts = SessionFacts(t, t, play.listened if play.audible else 0.0, play.trigger, play.slot_kind,
                                 play.programme, play.lesson, flagged)
            known = delta.sessions.get(key)
            delta.sessions[key] = (device.uid, device.site_id, play.play_id,
                                   facts if known is None else known[3].merge(facts))
        else:
            entry = delta.broadcast.setdefault((device.site_id, rules.local_day(e.at), play.programme, play.lesson),
                                               [0, 0])
            entry[0] += 1 if play.phase == "started" else 0
            entry[1] += round(play.listened * 100) if play.audible else 0
    return delta


def _fold_coverage(delta: Delta, device: DeviceFacts, e: Attributed, play, flagged: int,
                   durations: dict[str, Optional[float]], windows: dict[str, Window], rules: Rules) -> None:
    window = windows.get(play.programme)
    if window is None:
        return delta.exclude("unknown_programme", e.event_id)
    at = e.at
    day = rules.local_day(at)
    if not rules_mod.in_window(day, window, rules):
        return delta.exclude("outside_window", e.event_id)
    duration = durations.get(play.sha256)
    if not duration:
        return delta.exclude("unknown_rendition", e.event_id)
    member = rules_mod.holder_on(device.assignments, day)
    if member is None:
        return delta.exclude("no_member", e.event_id)
    if not play.audible:
        return delta.exclude("muted", e.event_id)
    key = (member, play.programme, play.lesson, play.sha256)
    cov = delta.coverage.get(key)
    if cov is None:
        cov = delta.coverage[key] = CoverageDelta(duration, [], at, at)
    else:
        if at < cov.first_at:
            cov.first_at = at
        if at > cov.last_at:
            cov.last_at = at
    if play.end > play.start:
        cov.stretches.append((rules_mod.units(play.start), rules_mod.units(play.end), rules_mod.to_epoch(at)))
    cov.events += 1
    cov.clock_flagged += flagged


# ---------------------------------------------------------------------------------------------------------------
# Writing a delta


def _greatest(session: Session):
    return func.max if session.get_bind().dialect.name == "sqlite" else func.greatest  # SQLite's 2-argument max


def _least(session: Session):
    return func.min if session.get_bind().dialect.name == "sqlite" else func.least


def write(session: Session, delta: Delta, device_uid: str, rules: Rules) -> None:
    """Merge DELTA (of DEVICE_UID's events) into the aggregate tables (in SESSION's transaction)."""
    write_many(session, [(device_uid, delta)], rules)


def write_many(session: Session, deltas: Sequence[tuple[str, Delta]], rules: Rules) -> None:
    """Merge the DELTAS of several batches, each (device uid, Delta), into the aggregate tables in SESSION's
    transaction, with a fixed number of statements for the lot: ingest's group commit writes every batch it took in
    one go. Every merge is order-independent, so merging the deltas first gives the rows one by one would. Last, it
    moves the change marks of the county days whose report figures changed (``marks.bump``, one statement)."""
    days: set[date] = set()
    coverage: dict[tuple[int, str, int, str], CoverageDelta] = {}
    broadcast: dict[tuple[int, date, str, int], list] = {}
    exclusions: dict[tuple[str, str], list] = {}
    for device_uid, delta in deltas:
        for key, cov in delta.coverage.items():
            known = coverage.get(key)
            if known is None:
                coverage[key] = CoverageDelta(cov.duration_s, list(cov.stretches), cov.first_at, cov.last_at,
                                              cov.events, cov.clock_flagged)
            else:
                known.stretches.extend(cov.stretches)
                known.first_at, known.last_at = min(known.first_at, cov.first_at), max(known.last_at, cov.last_at)
                known.events += cov.events
                known.clock_flagged += cov.clock_flagged
        for key, (plays, listened) in delta.broadcast.items():
            entry = broadcast.setdefault(key, [0, 0])
            entry[0] += plays
            entry[1] += listened
        for reason, (count, last_id) in delta.exclusions.items():
            entry = exclusions.setdefault((device_uid, reason), [0, ""])
            entry[0] += count
            entry[1] = max(entry[1], last_id)
    if coverage:
        days |= _write_coverage(session, coverage, rules)
    for _device_uid, delta in deltas:  # each looks up the device's own check-ins and sessions
        if delta.checkins:
            days |= _write_checkins(session, delta.checkins, rules)
        if delta.sessions:
            days |= _write_sessions(session, delta.sessions, rules)
    insert = upsert_insert(session)
    if broadcast:
        stmt = insert(BroadcastDay.__table__)
        session.connection().execute(stmt.on_conflict_do_update(
            index_elements=["site_id", "day", "programme", "lesson_id"],
            set_={"plays": BroadcastDay.__table__.c.plays + stmt.excluded.plays,
                  "listened_cs": BroadcastDay.__table__.c.listened_cs + stmt.excluded.listened_cs}),
            [{"site_id": site, "day": day, "programme": programme, "lesson_id": lesson, "plays": plays,
              "listened_cs": listened}
             for (site, day, programme, lesson), (plays, listened) in sorted(broadcast.items())])
        days.update(day for _site, day, _programme, _lesson in broadcast)
    if exclusions:
        stmt = insert(AttendanceExclusion.__table__)
        table = AttendanceExclusion.__table__
        session.connection().execute(stmt.on_conflict_do_update(
            index_elements=["device_uid", "reason"],
            set_={"events": table.c.events + stmt.excluded.events,
                  "last_event_id": _greatest(session)(table.c.last_event_id, stmt.excluded.last_event_id)}),
            [{"device_uid": device_uid, "reason": reason, "events": count, "last_event_id": last_id}
             for (device_uid, reason), (count, last_id) in sorted(exclusions.items())])
    # Last: on PostgreSQL a day's mark stays locked until the commit, and every ingest of today moves today's.
    marks.bump(session, days)


def _write_coverage(session: Session, coverage: dict, rules: Rules) -> set[date]:
    """Merge COVERAGE into its rows; the county days whose completions changed (a row completed, completed earlier,
    or a completed row's clock flags): a row that is not complete is read by no report."""
    days: set[date] = set()
    keys = sorted(coverage)  # one lock order, so two ingests never deadlock on PostgreSQL
    first = min(c.first_at for c in coverage.values())
    session.connection().execute(
        upsert_insert(session)(LessonCoverage.__table__)
        .on_conflict_do_nothing(index_elements=["member_id", "programme", "lesson_id", "sha256"]),
        [{"member_id": k[0], "programme": k[1], "lesson_id": k[2], "sha256": k[3], "duration_s": coverage[k].duration_s,
          "segments": [], "covered_s": 0.0, "first_at": first, "last_at": first, "events": 0, "clock_flagged": 0}
         for k in keys])
    rows = session.scalars(select(LessonCoverage).where(
        tuple_(LessonCoverage.member_id, LessonCoverage.programme, LessonCoverage.lesson_id,
               LessonCoverage.sha256).in_(keys)).order_by(LessonCoverage.id).with_for_update()).all()
    for row in rows:
        cov = coverage[(row.member_id, row.programme, row.lesson_id, row.sha256)]
        fresh = row.events == 0
        before = (row.completed_at, row.clock_flagged)
        row.segments = rules_mod.envelope([*(row.segments or []), *cov.stretches])
        row.covered_s = rules_mod.covered_seconds(row.segments)
        done = rules_mod.completed_at(row.segments, row.duration_s, rules)
        row.completed_at = None if done is None else rules_mod.from_epoch(done)
        row.first_at = cov.first_at if fresh else min(row.first_at, cov.first_at)
        row.last_at = cov.last_at if fresh else max(row.last_at, cov.last_at)
        row.events += cov.events
        row.clock_flagged += cov.clock_flagged
        if (row.completed_at, row.clock_flagged) != before:
            done_at = [at for at in (before[0], row.completed_at) if at is not None]
            if done_at:  # the earliest: a mark moves every window ending on or after its day
                days.add(rules.local_day(min(done_at)))
    session.flush()
    return days


def _write_checkins(session: Session, checkins: list[dict], rules: Rules) -> set[date]:
    """Store CHECKINS and attend the sessions around them; the county days of the sessions that got attendees."""
    # A credential is a member number (kept as it is: no secret) or a card's token, of which only the keyed digest
    # is stored and compared (server/org/cards.py); ingest has already replaced tokens in the stored events.
    digests = {c["credential"]: cards.digest(rules.card_key, c["credential"]) for c in checkins}
    credentials = set(digests) | set(digests.values())
    numbers: dict[str, int] = {}
    owners: dict[str, int] = {}
    for start in range(0, len(credentials), 500):
        chunk = sorted(credentials)[start:start + 500]
        for mid, no, card in session.execute(select(Member.id, Member.member_no, Member.card_token).where(
                or_(Member.member_no.in_(chunk), Member.card_token.in_(chunk)))):
            numbers[no] = mid
            if card:
                owners[card] = mid
    rows = []
    for c in checkins:
        plain = c["credential"]
        if plain in numbers:
            rows.append(dict(c, member_id=numbers[plain]))
        else:
            rows.append(dict(c, credential=digests[plain], member_id=owners.get(digests[plain])))
    session.connection().execute(upsert_insert(session)(Checkin.__table__)
                                 .on_conflict_do_nothing(index_elements=["device_uid", "event_id"]), rows)
    # A check-in may arrive after the session it belongs to: attach it to every session around it. A batch is one
    # device's, so one look-up covers all its check-ins.
    known = [r for r in rows if r["member_id"] is not None]
    if not known:
        return set()
    times = [rules_mod.to_epoch(r["at"]) for r in known]
    found = session.execute(select(ClassSession.key, ClassSession.started_at, ClassSession.ended_at).where(
        ClassSession.device_uid == known[0]["device_uid"],
        ClassSession.started_at <= rules_mod.from_epoch(max(times) + rules.checkin_before_s + 1),
        ClassSession.ended_at >= rules_mod.from_epoch(min(times) - rules.checkin_after_s - 1))).all()
    spans = [(key, rules_mod.to_epoch(a), rules_mod.to_epoch(b)) for key, a, b in found]
    entries = [(key, r["member_id"], r["at"]) for r, t in zip(known, times) for key, a, b in spans
               if rules_mod.checkin_matches(t, a, b, rules)]
    _attend(session, entries)
    attended = {key for key, _member, _at in entries}
    return {rules.local_day(started) for key, started, _ended in found if key in attended}


def _attend(session: Session, entries: list[tuple[str, int, datetime]]) -> None:
    if not entries:
        return
    first: dict[tuple[str, int], datetime] = {}
    for key, member, at in entries:
        first[(key, member)] = min(at, first.get((key, member), at))
    stmt = upsert_insert(session)(SessionAttendee.__table__)
    # A member who checked in twice attended from the first check-in, whichever arrived first.
    stmt = stmt.on_conflict_do_update(index_elements=["session_key", "member_id", "source"],
                                      set_={"at": _least(session)(SessionAttendee.at, stmt.excluded.at)})
    session.connection().execute(stmt, [
        {"session_key": key, "member_id": member, "source": "checkin", "removed": False, "at": at, "actor": ""}
        for (key, member), at in sorted(first.items())])


def _write_sessions(session: Session, sessions: dict, rules: Rules) -> set[date]:
    """Merge SESSIONS into their rows and attend the check-ins inside them; the county days they started on (before
    and after the merge: a session's start only moves earlier)."""
    keys = sorted(sessions)
    days: set[date] = set()
    existing = {s.key: s for s in session.scalars(select(ClassSession).where(ClassSession.key.in_(keys))
                                                   .with_for_update())}
    spans: list[tuple[str, str, float, float]] = []
    for key in keys:
        uid, site, play_id, facts = sessions[key]
        row = existing.get(key)
        if row is not None:
            days.add(rules.local_day(row.started_at))
            old = SessionFacts(rules_mod.to_epoch(row.started_at), rules_mod.to_epoch(row.ended_at), row.listened_s,
                               row.trigger, row.slot_kind, row.programme, row.lesson_id, row.clock_flagged)
            facts = old.merge(facts)
        else:
            row = ClassSession(key=key, site_id=site, source="device", device_uid=uid, play_id=play_id, title="",
                               created_by="")
            session.add(row)
        row.started_at, row.ended_at = rules_mod.from_epoch(facts.started), rules_mod.from_epoch(facts.ended)
        row.listened_s, row.trigger, row.slot_kind = facts.listened_s, facts.trigger, facts.slot_kind
        row.programme, row.lesson_id, row.clock_flagged = facts.programme, facts.lesson, facts.clock_flagged
        row.is_class = rules_mod.is_class(facts, rules)
        days.add(rules.local_day(row.started_at))
        spans.append((key, uid, facts.started, facts.ended))
    session.flush()
    # Their windows may have grown: every check-in at the device inside one is an attendee (one look-up per batch,
    # which is one device's).
    # The look-up is a second wider than the rule, so the rule alone (checkin_matches) decides at the edges.
    lo = min(a for _k, _u, a, _b in spans) - rules.checkin_before_s - 1
    hi = max(b for _k, _u, _a, b in spans) + rules.checkin_after_s + 1
    found = session.execute(select(Checkin.member_id, Checkin.at).where(
        Checkin.device_uid == spans[0][1], Checkin.member_id.is_not(None),
        Checkin.at >= rules_mod.from_epoch(lo), Checkin.at <= rules_mod.from_epoch(hi))).all()
    checks = [(member, at, rules_mod.to_epoch(at)) for member, at in found]
    _attend(session, [(key, member, at) for key, _u, a, b in spans for member, at, t in checks
                      if rules_mod.checkin_matches(t, a, b, rules)])
    return days


# ---------------------------------------------------------------------------------------------------------------
# The two callers: a batch at ingest, and the rebuild


def fold_batch(session: Session, device: Optional[DeviceFacts], events: Sequence[Attributed], lookups: Lookups,
               rules: Rules) -> Optional[Delta]:
    """What a batch's events add to the aggregates (SESSION only reads, for look-ups the cache lacks)."""
    if device is None or not events:
        return None
    shas = [e.body.get("sha256") for e in events if e.type == "play" and isinstance(e.body.get("sha256"), str)]
    durations = lookups.durations(session, shas) if shas else {}
    windows = lookups.windows(session) if device.kind == "radio" and shas else {}
    return fold(Delta(), device, events, durations, windows, rules)


def apply_batch(session: Session, device: Optional[DeviceFacts], events: Sequence[Attributed], lookups: Lookups,
                rules: Rules) -> None:
    """Fold a batch's newly stored events into the aggregates, in SESSION's transaction."""
    delta = fold_batch(session, device, events, lookups, rules)
    if delta is not None:
        write(session, delta, device.uid, rules)


DERIVED = (LessonCoverage, Checkin, BroadcastDay, AttendanceExclusion)


def rebuild(services, *, chunk: int = 20_000, progress=None) -> dict[str, int]:
    """Recompute every derived aggregate from the stored events; staff-entered sessions and attendees stay.

    Runs in one transaction, so reports never see a half-built state and a failure leaves the old aggregates.
    PROGRESS, when given, is called with (events done, events in all).
    """
    rules = services.rules
    lookups = Lookups()
    with services.db.session() as session:
        total = session.scalar(select(func.count()).select_from(DeviceEvent)) or 0
        for model in DERIVED:
            session.execute(delete(model))
        session.execute(delete(SessionAttendee).where(SessionAttendee.source == "checkin"))
        session.execute(delete(ClassSession).where(ClassSession.source == "device"))
        uids = session.scalars(select(DeviceEvent.device_uid).distinct().order_by(DeviceEvent.device_uid)).all()
        done = flagged_changed = 0
        for uid in uids:
            device = lookups.device(session, uid)
            last = (0, 0)
            while True:
                rows = _event_rows(session, uid, last, chunk)
                if not rows:
                    break
                last = (rows[-1][1], rows[-1][0])
                attributed = []
                enrolled = device.first_enrolled_at if device else None
                for row_id, _epoch, event_id, kind, body, received_at, stored_at, stored_flag in rows:
                    at, flag = rules_mod.attributed_time(body, received_at, enrolled, rules)
                    if (at, flag) != (stored_at, stored_flag):
                        session.execute(update(DeviceEvent).where(DeviceEvent.id == row_id)
                                        .values(at=at, clock_flag=flag))
                        flagged_changed += 1
                    attributed.append(Attributed(event_id, kind, body, at, flag))
                apply_batch(session, device, attributed, lookups, rules)
                done += len(rows)
                if progress is not None:
                    progress(done, total)
        marks.bump(session, [marks.SENTINEL_DAY])  # every report's data may have changed: every fingerprint moves
    return {"events": done, "devices": len(uids), "times_changed": flagged_changed}


_SQLITE_EVENTS = ("SELECT id, epoch, event_id, type, body, received_at, at, clock_flag FROM device_events "
                  "WHERE device_uid = ? AND (epoch > ? OR (epoch = ? AND id > ?)) ORDER BY epoch, id LIMIT ?")


def _event_rows(session: Session, uid: str, last: tuple[int, int], chunk: int) -> list[tuple]:
    """The next CHUNK of a device's events after LAST (epoch, id): (id, epoch, event id, type, body, received_at,
    at, clock flag). On SQLite through the driver: SQLAlchemy's per-value conversions were most of a rebuild."""
    if session.get_bind().dialect.name != "sqlite":
        return [tuple(r) for r in session.execute(
            select(DeviceEvent.id, DeviceEvent.epoch, DeviceEvent.event_id, DeviceEvent.type, DeviceEvent.body,
                   DeviceEvent.received_at, DeviceEvent.at, DeviceEvent.clock_flag)
            .where(DeviceEvent.device_uid == uid, tuple_(DeviceEvent.epoch, DeviceEvent.id) > last)
            .order_by(DeviceEvent.epoch, DeviceEvent.id).limit(chunk))]
    loads, parse, utc = json.loads, datetime.fromisoformat, timezone.utc
    return [(i, ep, eid, kind, loads(body), parse(recv).replace(tzinfo=utc),
             parse(at).replace(tzinfo=utc) if at is not None else None, flag)
            for i, ep, eid, kind, body, recv, at, flag in session.connection().exec_driver_sql(
                _SQLITE_EVENTS, (uid, last[0], last[0], last[1], chunk))]


def snapshot(session: Session) -> dict[str, list[tuple]]:
    """Every derived aggregate row without its surrogate id, sorted: what a rebuild must reproduce exactly."""
    def rows(stmt):
        return sorted(tuple(_plain(v) for v in r) for r in session.execute(stmt).all())

    return {
        "coverage": rows(select(LessonCoverage.member_id, LessonCoverage.programme, LessonCoverage.lesson_id,
                                LessonCoverage.sha256, LessonCoverage.duration_s, LessonCoverage.segments,
                                LessonCoverage.covered_s, LessonCoverage.completed_at, LessonCoverage.first_at,
                                LessonCoverage.last_at, LessonCoverage.events, LessonCoverage.clock_flagged)),
        "sessions": rows(select(ClassSession.key, ClassSession.site_id, ClassSession.source, ClassSession.device_uid,
                                ClassSession.play_id, ClassSession.programme, ClassSession.lesson_id,
                                ClassSession.trigger, ClassSession.slot_kind, ClassSession.started_at,
                                ClassSession.ended_at, ClassSession.listened_s, ClassSession.is_class,
                                ClassSession.clock_flagged)),
        "attendees": rows(select(SessionAttendee.session_key, SessionAttendee.member_id, SessionAttendee.source,
                                 SessionAttendee.removed, SessionAttendee.at)),
        "checkins": rows(select(Checkin.device_uid, Checkin.event_id, Checkin.site_id, Checkin.at, Checkin.member_id,
                                Checkin.method, Checkin.credential, Checkin.clock_flagged)),
        "broadcast": rows(select(BroadcastDay.site_id, BroadcastDay.day, BroadcastDay.programme,
                                 BroadcastDay.lesson_id, BroadcastDay.plays, BroadcastDay.listened_cs)),
        "exclusions": rows(select(AttendanceExclusion.device_uid, AttendanceExclusion.reason,
                                  AttendanceExclusion.events, AttendanceExclusion.last_event_id)),
    }


def _plain(value):
    if isinstance(value, list):
        return tuple(_plain(v) for v in value)
    if isinstance(value, float):
        return round(value, 6)
    return value
