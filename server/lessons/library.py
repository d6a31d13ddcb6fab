"""The lesson library as staff browse it: search by title or speaker, filter by series, language and state, paged,
with the programmes that use each lesson."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from server.lessons.models import Lesson
from server.programmes.models import Programme, ProgrammeItem

STATES = ("processing", "ready", "failed", "rejected")


@dataclass(frozen=True)
class LibraryQuery:
    """What a library page asks for."""

    text: str = ""
    series: str = ""
    language: str = ""
    state: str = ""
    page: int = 1
    size: int = 25

    @classmethod
    def from_args(cls, args: Mapping[str, Any], size: int) -> "LibraryQuery":
        """The query from request arguments (q, series, language, state, page); unknown states are ignored."""
        page = str(args.get("page") or "1")
        state = str(args.get("state") or "")
        return cls(text=str(args.get("q") or "").strip()[:200], series=str(args.get("series") or "")[:200],
                   language=str(args.get("language") or "")[:35], state=state if state in STATES else "",
                   page=int(page) if page.isdigit() and 0 < int(page) < 100000 else 1, size=size)


@dataclass
class LibraryPage:
    """One page of lessons, how many match, and for each lesson the programmes using it."""

    lessons: list[Lesson]
    total: int
    used: dict[int, list[str]]
    query: LibraryQuery

    @property
    def pages(self) -> int:
        """How many pages the matches fill."""
        return max(1, -(-self.total // self.query.size))


def _filtered(query: LibraryQuery):
    stmt = select(Lesson)
    if query.text:
        like = f"%{query.text.replace('%', '').replace('_', '')}%"
        stmt = stmt.where(or_(Lesson.title.ilike(like), Lesson.speaker.ilike(like)))
    if query.series:
        stmt = stmt.where(Lesson.series == query.series)
    if query.language:
        stmt = stmt.where(Lesson.language == query.language)
    if query.state:
        stmt = stmt.where(Lesson.state == query.state)
    return stmt


def search(session: Session, query: LibraryQuery) -> LibraryPage:
    """The page of lessons QUERY asks for, newest first."""
    stmt = _filtered(query)
    total = session.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = session.scalars(stmt.order_by(Lesson.id.desc()).limit(query.size)
                           .offset((query.page - 1) * query.size)).all()
    return LibraryPage(list(rows), total or 0, used_by(session, [r.id for r in rows]), query)


def used_by(session: Session, lesson_ids: list[int]) -> dict[int, list[str]]:
    """For each of LESSON_IDS that a draft or published programme uses: 'CODE vN' of each."""
    if not lesson_ids:
        return {}
    rows = session.execute(select(ProgrammeItem.lesson_id, Programme.code, Programme.version)
                           .join(Programme, Programme.id == ProgrammeItem.programme_id)
                           .where(ProgrammeItem.lesson_id.in_(lesson_ids), Programme.state != "superseded")
                           .order_by(Programme.code, Programme.version)).all()
    used: dict[int, list[str]] = {}
    for lesson_id, code, version in rows:
        used.setdefault(lesson_id, []).append(f"{code} v{version}")
    return used


def facets(session: Session) -> dict[str, list[str]]:
    """The series and languages in the library, for the filters."""
    return {"series": [s for s in session.scalars(select(Lesson.series).distinct().order_by(Lesson.series)) if s],
            "languages": list(session.scalars(select(Lesson.language).distinct().order_by(Lesson.language))),
            "states": list(STATES)}


def find(session: Session, ids: list[int]) -> dict[int, Lesson]:
    """Lessons by id (for showing a programme's items)."""
    return {l.id: l for l in session.scalars(select(Lesson).where(Lesson.id.in_(ids)))} if ids else {}


__all__ = ["LibraryQuery", "LibraryPage", "search", "used_by", "facets", "find"]
