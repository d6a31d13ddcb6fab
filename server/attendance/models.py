"""SQLAlchemy models for attendance: what ingest makes of plays and check-ins, kept up to date batch by batch.

Reports read only these tables (and the members and sites), never the raw events, so their cost follows the number
of members, lessons and sessions. ``lessoncast attendance rebuild`` recomputes every row marked as derived from the
raw events; rows staff entered (manual sessions, roster and operator attendees) are never touched by a rebuild.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Optional

from sqlalchemy import JSON, BigInteger, Boolean, Date, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UTCDateTime


class LessonCoverage(Base):
    """What one member heard of one rendition of a lesson in a programme, and when it became complete."""

    __tablename__ = "lesson_coverage"
    __table_args__ = (UniqueConstraint("member_id", "programme", "lesson_id", "sha256", name="uq_lesson_coverage"),
                      Index("ix_lesson_coverage_completed", "completed_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    programme: Mapped[str] = mapped_column(String(64))
    lesson_id: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    duration_s: Mapped[float] = mapped_column(Float)
    # [[start, end, heard_at], ...]: hundredths of a second, and epoch seconds (attendance_rules.add_range)
    segments: Mapped[list[list[float]]] = mapped_column(JSON, default=list)
    covered_s: Mapped[float] = mapped_column(Float, default=0.0)
    completed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)
    events: Mapped[int] = mapped_column(Integer, default=0)
    clock_flagged: Mapped[int] = mapped_column(Integer, default=0)


class ClassSession(Base):
    """A class (or an operator-started playback that may become one) at a site.

    ``source`` is ``device`` (made from a terminal's play events, keyed ``dev:<device>:<play id>``) or ``manual``
    (entered by staff or created by a roster import, keyed ``manual:...``).
    """

    __tablename__ = "class_sessions"
    __table_args__ = (Index("ix_class_sessions_site_started", "site_id", "started_at"),
                      Index("ix_class_sessions_device_started", "device_uid", "started_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(160), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    source: Mapped[str] = mapped_column(String(16))
    device_uid: Mapped[Optional[str]] = mapped_column(String(64))
    play_id: Mapped[Optional[str]] = mapped_column(String(64))
    programme: Mapped[Optional[str]] = mapped_column(String(64))
    lesson_id: Mapped[Optional[int]] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(16), default="")
    slot_kind: Mapped[Optional[str]] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime)
    listened_s: Mapped[float] = mapped_column(Float, default=0.0)
    is_class: Mapped[bool] = mapped_column(Boolean, default=False)
    clock_flagged: Mapped[int] = mapped_column(Integer, default=0)
    title: Mapped[str] = mapped_column(String(200), default="")
    created_by: Mapped[str] = mapped_column(String(100), default="")


class SessionAttendee(Base):
    """A member at a session, by one source: ``checkin`` (derived), ``roster`` or ``operator`` (entered).

    An operator's removal is a row with ``removed`` set; it outranks every other source for that member.
    """

    __tablename__ = "session_attendees"
    __table_args__ = (UniqueConstraint("session_key", "member_id", "source", name="uq_session_attendee"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_key: Mapped[str] = mapped_column(String(160), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(16))
    removed: Mapped[bool] = mapped_column(Boolean, default=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(100), default="")


class Checkin(Base):
    """A card or QR check-in at a terminal (derived from its event; the member is None for an unknown card)."""

    __tablename__ = "checkins"
    __table_args__ = (UniqueConstraint("device_uid", "event_id", name="uq_checkins_device_event"),
                      Index("ix_checkins_device_at", "device_uid", "at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    device_uid: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(36))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    member_id: Mapped[Optional[int]] = mapped_column(ForeignKey("members.id", ondelete="SET NULL"))
    method: Mapped[str] = mapped_column(String(16), default="")
    credential: Mapped[str] = mapped_column(String(128), default="")
    clock_flagged: Mapped[bool] = mapped_column(Boolean, default=False)


class BroadcastDay(Base):
    """The daily loudspeaker broadcast at a site: what played on a day, how many plays and how long it was audible."""

    __tablename__ = "broadcast_days"
    __table_args__ = (UniqueConstraint("site_id", "day", "programme", "lesson_id", name="uq_broadcast_day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    day: Mapped[date] = mapped_column(Date)
    programme: Mapped[str] = mapped_column(String(64))
    lesson_id: Mapped[int] = mapped_column(Integer)
    plays: Mapped[int] = mapped_column(Integer, default=0)
    # hundredths of a second: an integer sum is the same in whatever order the plays arrive
    listened_cs: Mapped[int] = mapped_column(Integer, default=0)


class AttendanceMark(Base):
    """A county day's change mark: ``version`` goes up in every transaction that changes what a participation report
    reads about that day (a lesson completed on it, a class session started on it or its attendees, its broadcast),
    so a kept report knows from these few rows whether its window moved (``server.attendance.summary``). The day
    ``SENTINEL_DAY`` (0001-01-01, before every window's end) is moved by a rebuild and marks data from before the
    marks existed."""

    __tablename__ = "attendance_marks"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class AttendanceExclusion(Base):
    """Events of a device that count for nothing, by reason (no member holds the radio, outside the window...)."""

    __tablename__ = "attendance_exclusions"

    device_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    events: Mapped[int] = mapped_column(Integer, default=0)
    last_event_id: Mapped[str] = mapped_column(String(36), default="")


class Export(Base):
    """A report file the worker builds (a large report, or one asked for with POST /api/v1/exports).

    It keeps who asked and the township scope they had, so the job builds exactly what they may read, and only
    they (or an admin) may download it. The file lives in ``<data>/exports/`` until ``expires_at``.
    """

    __tablename__ = "exports"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    report: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    token_id: Mapped[Optional[int]] = mapped_column(ForeignKey("api_tokens.id", ondelete="CASCADE"))
    requested_by: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    township: Mapped[Optional[str]] = mapped_column(String(100))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    filename: Mapped[str] = mapped_column(String(255))
    stored_as: Mapped[Optional[str]] = mapped_column(String(100))
    size_bytes: Mapped[Optional[int]] = mapped_column(BigInteger)
    rows: Mapped[Optional[int]] = mapped_column(Integer)
    peak_rss_kb: Mapped[Optional[int]] = mapped_column(Integer)
