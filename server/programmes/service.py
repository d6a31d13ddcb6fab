"""Programmes: a quarter's or campaign's ordered lessons, who they are for, and the daily broadcast slots.

A draft can be edited freely. Publishing freezes it; a change after that is a new version that supersedes the
published one when it is itself published. ``plain`` turns rows into the ``playlists`` types the pure channel and
manifest code works on.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Mapping, Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from playlists import model as pl
from server.attendance.rules import FIRST_DAY, LAST_DAY
from server.audit import AuditEntry
from server.errors import Conflict, Invalid, NotFound
from server.i18n import _l
from server.lessons.models import Lesson, Rendition
from server.org.models import Group
from server.programmes.models import Programme, ProgrammeItem


def _date(value: Any, field: str) -> date:
    if isinstance(value, date):
        return value
    try:
        day = date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        day = None
    if day is None or not FIRST_DAY <= day <= LAST_DAY:
        raise Invalid("bad_date", _l("{field}: '{value}' is not a date like 2026-10-01 (within {year}-{year2}).",
                                     field=field, value=value, year=FIRST_DAY.year, year2=LAST_DAY.year), field=field)
    return day


def _slots(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise Invalid("bad_slots", _l("slots: expected a list like "
                                      "[{{\"time\": \"07:00\", \"kind\": \"broadcast\"}}]."))
    slots = []
    for n, raw in enumerate(value, 1):
        raw = {"time": raw} if isinstance(raw, str) else raw
        if isinstance(raw, dict) and "days" in raw:
            _check_days(raw["days"], n)
        try:
            slot = pl.Slot(time=str(raw.get("time")), kind=str(raw.get("kind", "broadcast")),
                           item_position=raw.get("item_position"), days=tuple(raw.get("days", pl.WEEKDAYS)))
        except (ValueError, AttributeError) as exc:
            raise Invalid("bad_slots", _l("slot {n}: {exc}. Use HH:MM and kind broadcast or class.",
                                          n=n, exc=exc)) from None
        slots.append(slot_json(slot))
    return sorted(slots, key=lambda s: s["time"])


def _check_days(days: Any, n: int) -> None:
    if not isinstance(days, list):
        raise Invalid("bad_days", _l("slot {n}: days must be a list such as [\"mon\", \"tue\"], or left out for "
                                     "every day.", n=n), field="days")
    if not days:
        raise Invalid("bad_days", _l("slot {n}: days is empty. A slot plays on at least one day; remove the slot "
                                     "instead.", n=n), field="days")
    unknown = [d for d in days if d not in pl.WEEKDAYS]
    if unknown:
        raise Invalid("bad_days", _l("slot {n}: {day!r} is not a day. Use mon, tue, wed, thu, fri, sat or sun.",
                                     n=n, day=unknown[0]), field="days")
    twice = sorted({d for d in days if days.count(d) > 1})
    if twice:
        raise Invalid("bad_days", _l("slot {n}: {day} is listed twice.", n=n, day=twice[0]), field="days")


def slot_json(slot: pl.Slot) -> dict[str, Any]:
    """A slot as it is stored and as the API shows it: days always listed, Monday first."""
    return {"time": slot.time, "kind": slot.kind, "item_position": slot.item_position, "days": list(slot.days)}


def stored_slot(raw: Mapping[str, Any]) -> pl.Slot:
    """A stored slot as plain data; a slot stored without days (before migration 0010) plays every day."""
    return pl.Slot(time=raw["time"], kind=raw["kind"], item_position=raw.get("item_position"),
                   days=tuple(raw.get("days", pl.WEEKDAYS)))


def _lesson(session: Session, lesson_id: Any, where: str) -> Lesson:
    lesson = session.get(Lesson, lesson_id) if type(lesson_id) is int and 0 < lesson_id < 2**53 else None
    if lesson is None:
        raise Invalid("unknown_lesson", _l("{where}: there is no lesson {lesson_id!r}.",
                                           where=where, lesson_id=lesson_id))
    return lesson


def _items(session: Session, value: Any) -> list[ProgrammeItem]:
    if not isinstance(value, list):
        raise Invalid("bad_items", _l("items: expected a list like [{{\"lesson\": 12, \"mandatory\": true}}]."))
    known_groups = set(session.scalars(select(Group.key)))
    items = []
    for n, raw in enumerate(value, 1):
        raw = {"lesson": raw} if isinstance(raw, int) else raw
        if not isinstance(raw, dict):
            raise Invalid("bad_items", _l("item {n}: expected an object with 'lesson'.", n=n))
        lesson = _lesson(session, raw.get("lesson"), f"item {n}")
        groups = raw.get("groups") or []
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise Invalid("bad_items", _l("item {n}: groups must be a list of group keys.", n=n), field="items")
        unknown = sorted(set(groups) - known_groups)
        if unknown:
            raise Invalid("unknown_group", _l("item {n}: no group {choices}. See GET /api/v1/groups for the keys.",
                                              n=n, choices=', '.join(map(str, unknown))))
        variants = raw.get("variants") or []
        if not isinstance(variants, list):
            raise Invalid("bad_items", _l("item {n}: variants must be a list of lesson ids.", n=n), field="items")
        variants = [_lesson(session, v, f"item {n} variant").id for v in variants]
        items.append(ProgrammeItem(position=n, lesson_id=lesson.id, mandatory=bool(raw.get("mandatory", True)),
                                   groups=sorted(groups), variant_lesson_ids=variants))
    return items


def _apply(session: Session, programme: Programme, data: Mapping[str, Any]) -> None:
    if "code" in data:
        code = str(data["code"]).strip()
        if not code or len(code) > 64:
            raise Invalid("bad_code", _l("code: 1 to 64 characters, e.g. 2026-Q4."))
        programme.code = code
    if "title" in data:
        programme.title = str(data["title"]).strip()[:200]
    if "valid_from" in data:
        programme.valid_from = _date(data["valid_from"], "valid_from")
    if "valid_until" in data:
        programme.valid_until = _date(data["valid_until"], "valid_until")
    if "slots" in data:
        programme.slots = _slots(data["slots"])
    if "items" in data:
        items = _items(session, data["items"])
        if programme.id is not None:
            # Delete the old rows first: (programme, position) is unique and SQLAlchemy inserts before it deletes.
            programme.items.clear()
            session.flush()
        programme.items = items
    if not programme.title:
        raise Invalid("bad_title", _l("title: a programme needs a title."))
    if programme.valid_from is None or programme.valid_until is None or programme.valid_from > programme.valid_until:
        raise Invalid("bad_window", _l("valid_from and valid_until: the window must start before it ends."))
    positions = {item.position for item in programme.items}
    for slot in programme.slots:
        if slot["item_position"] is not None and slot["item_position"] not in positions:
            raise Invalid("bad_slots", _l("slot {time}: there is no item {item_position}.",
                                          time=slot['time'], item_position=slot['item_position']))


def create(services, data: Mapping[str, Any], actor: str) -> int:
    """Create a draft programme from JSON-like data; return its id."""
    with services.db.session() as session:
        code = str(data.get("code", "")).strip()
        if session.scalar(select(Programme.id).where(Programme.code == code)) is not None:
            raise Conflict("programme_exists",
                           _l("Programme {code} exists. Edit its draft, or make a new version of the published one.",
                              code=code))
        programme = Programme(code=code, version=1, title="", state="draft", slots=[], created_at=services.clock())
        _apply(session, programme, {"title": "", "slots": [], "items": [], **data})
        session.add(programme)
        session.add(AuditEntry(at=services.clock(), actor=actor, action="programme.create", subject=code))
        session.flush()
        return programme.id


def get(session: Session, ref: Any) -> Programme:
    """A programme by id, or by code (its newest version); NotFound otherwise."""
    programme = None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isascii() and ref.isdigit() and len(ref) < 16):
        programme = session.get(Programme, int(ref))
    if programme is None:
        programme = session.scalar(select(Programme).where(Programme.code == str(ref))
                                   .order_by(Programme.version.desc()).limit(1))
    if programme is None:
        raise NotFound("no_such_programme", _l("There is no programme {ref}.", ref=ref))
    return programme


def update(services, ref: Any, data: Mapping[str, Any], actor: str) -> None:
    """Edit a draft; a published programme is frozen (make a new version instead)."""
    with services.db.session() as session:
        programme = get(session, ref)
        if programme.state != "draft":
            raise Conflict("programme_frozen",
                           _l("{code} v{version} is {state} and cannot change. Make a new version (POST "
                              ".../new-version), edit it and publish it.",
                              code=programme.code, version=programme.version, state=programme.state))
        if "code" in data and data["code"] != programme.code:
            raise Invalid("bad_code", _l("code: a programme's code does not change."))
        _apply(session, programme, data)
        session.add(AuditEntry(at=services.clock(), actor=actor, action="programme.edit", subject=programme.code,
                               details={"version": programme.version, "fields": sorted(data)}))


def new_version(services, ref: Any, actor: str) -> int:
    """A new draft copying a published programme; publishing it supersedes the old one. Returns its id."""
    with services.db.session() as session:
        old = get(session, ref)
        if old.state == "draft":
            raise Conflict("still_draft", _l("{code} v{version} is a draft: edit it directly.",
                                             code=old.code, version=old.version))
        newest = session.scalar(select(Programme).where(Programme.code == old.code)
                                .order_by(Programme.version.desc()).limit(1))
        if newest.state == "draft":
            raise Conflict("draft_exists", _l("{code} already has a draft, v{version}.",
                                              code=old.code, version=newest.version))
        copy = Programme(code=old.code, version=newest.version + 1, title=old.title, valid_from=old.valid_from,
                         valid_until=old.valid_until, slots=list(old.slots), state="draft", supersedes_id=old.id,
                         created_at=services.clock(),
                         items=[ProgrammeItem(position=i.position, lesson_id=i.lesson_id, mandatory=i.mandatory,
                                              groups=list(i.groups), variant_lesson_ids=list(i.variant_lesson_ids))
                                for i in old.items])
        session.add(copy)
        session.add(AuditEntry(at=services.clock(), actor=actor, action="programme.new_version", subject=old.code,
                               details={"version": copy.version}))
        session.flush()
        return copy.id


def plain(session: Session, programme: Programme) -> pl.Programme:
    """The programme as ``playlists`` plain data, with each lesson's ready renditions."""
    return plain_all(session, [programme])[0]


def plain_all(session: Session, programmes: list[Programme]) -> list[pl.Programme]:
    """``plain`` of each programme, from three column queries for the items, lessons and ready renditions of them
    all (a publish preview reads every active programme; no ORM objects are built for them)."""
    by_programme: dict[int, list] = {p.id: [] for p in programmes}
    if programmes:
        for row in session.execute(
                select(ProgrammeItem.programme_id, ProgrammeItem.position, ProgrammeItem.lesson_id,
                       ProgrammeItem.mandatory, ProgrammeItem.groups, ProgrammeItem.variant_lesson_ids)
                .where(ProgrammeItem.programme_id.in_(list(by_programme))).order_by(ProgrammeItem.position)):
            by_programme[row.programme_id].append(row)
    ids = {r.lesson_id for rows in by_programme.values() for r in rows} | \
        {v for rows in by_programme.values() for r in rows for v in r.variant_lesson_ids}
    lessons = {r.id: r for r in session.execute(
        select(Lesson.id, Lesson.title, Lesson.language).where(Lesson.id.in_(ids)))} if ids else {}
    renditions: dict[int, list[pl.Rendition]] = {i: [] for i in lessons}
    if ids:
        for r in session.execute(
                select(Rendition.lesson_id, Rendition.profile, Rendition.extension, Rendition.size_bytes,
                       Rendition.sha256, Rendition.duration_s)
                .where(Rendition.lesson_id.in_(ids), Rendition.state == "ready", Rendition.sha256.is_not(None))
                .order_by(Rendition.id)):
            renditions[r.lesson_id].append(pl.Rendition(
                profile=r.profile, path=f"media/{r.sha256}.{r.extension}", length=r.size_bytes, sha256=r.sha256,
                duration=r.duration_s or 0.0))
    versions = {i: pl.LessonVersion(lesson_id=i, title=row.title, language=row.language,
                                    renditions=tuple(renditions[i])) for i, row in lessons.items()}
    result = []
    for programme in programmes:
        items = tuple(pl.Item(position=r.position, lesson=versions[r.lesson_id], mandatory=r.mandatory,
                              groups=frozenset(r.groups), variants=tuple(versions[v] for v in r.variant_lesson_ids))
                      for r in by_programme[programme.id])
        slots = tuple(stored_slot(s) for s in programme.slots)
        result.append(pl.Programme(id=programme.id, code=programme.code, version=programme.version,
                                   title=programme.title, valid_from=programme.valid_from,
                                   valid_until=programme.valid_until, items=items, slots=slots))
    return result


def not_ready(session: Session, programme: Programme) -> list[str]:
    """Problems that stop a publish: lessons still processing, rejected or failed."""
    ids = [lesson_id for item in programme.items for lesson_id in [item.lesson_id, *item.variant_lesson_ids]]
    lessons = {lesson.id: lesson for lesson in session.scalars(select(Lesson).where(Lesson.id.in_(ids)))} \
        if ids else {}
    problems = []
    for item in programme.items:
        for lesson_id in [item.lesson_id, *item.variant_lesson_ids]:
            lesson = lessons[lesson_id]
            if lesson.state != "ready":
                problems.append(f"item {item.position}: lesson {lesson.id} '{lesson.title}' is {lesson.state}")
    return problems


def programme_json(programme: Programme) -> dict[str, Any]:
    """A programme as the API shows it."""
    return {
        "id": programme.id, "code": programme.code, "version": programme.version, "title": programme.title,
        "state": programme.state, "valid_from": programme.valid_from.isoformat(),
        "valid_until": programme.valid_until.isoformat(),
        "slots": [slot_json(stored_slot(s)) for s in programme.slots],
        "supersedes": programme.supersedes_id,
        "published_at": programme.published_at.isoformat() if programme.published_at else None,
        "published_by": programme.published_by,
        "items": [{"position": i.position, "lesson": i.lesson_id, "mandatory": i.mandatory, "groups": i.groups,
                   "variants": i.variant_lesson_ids} for i in programme.items],
    }


def active(session: Session, today: date, grace_days: int, extra: Optional[Programme] = None) -> list[Programme]:
    """Published programmes still in their window plus grace (and EXTRA, the one being published, replacing
    whatever it supersedes)."""
    from datetime import timedelta

    rows = session.scalars(select(Programme).where(Programme.state == "published")
                           .where(Programme.valid_until >= today - timedelta(days=grace_days))).all()
    if extra is not None:
        rows = [p for p in rows if p.id != extra.supersedes_id and p.code != extra.code] + [extra]
    return sorted(rows, key=lambda p: (p.valid_from, p.id))
