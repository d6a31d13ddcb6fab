"""SQLAlchemy models for training records: members' roles over time, off-system trainings, certificates.

Study hours themselves are never stored: ``server.training.hours`` computes them from the attendance aggregates,
these rows and the lessons' credited hours, so the report, the member record and every export show the same figures.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Optional

from sqlalchemy import Date, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UTCDateTime


class MemberRole(Base):
    """A member's role from a day on (member, branch_secretary or committee) until their next row."""

    __tablename__ = "member_roles"
    __table_args__ = (UniqueConstraint("member_id", "from_date", name="uq_member_roles_day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(32))
    from_date: Mapped[date] = mapped_column(Date)


class OffSystemTraining(Base):
    """A training outside lessoncast that staff entered or imported as a roster (a party-school course, a lecture)."""

    __tablename__ = "off_system_trainings"
    __table_args__ = (UniqueConstraint("member_id", "day", "title", name="uq_off_system_training"),
                      Index("ix_off_system_trainings_day", "day"))

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    day: Mapped[date] = mapped_column(Date)
    hours: Mapped[float] = mapped_column(Float)
    entered_by: Mapped[str] = mapped_column(String(100), default="")
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Certificate(Base):
    """A training certificate: numbered, with the verification code printed on it (and its digest to look it up)."""

    __tablename__ = "certificates"
    __table_args__ = (UniqueConstraint("member_id", "programme", name="uq_certificate_member_programme"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    code: Mapped[str] = mapped_column(String(32))
    code_digest: Mapped[str] = mapped_column(String(64), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    programme: Mapped[str] = mapped_column(String(64))
    programme_title: Mapped[str] = mapped_column(String(200))
    hours: Mapped[float] = mapped_column(Float)
    completed_on: Mapped[date] = mapped_column(Date)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    issued_by: Mapped[str] = mapped_column(String(100), default="")
    prints: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


class SiteFeedback(Base):
    """A feedback entry of a site's logbook (意见反馈记录): what an operator wrote, or a device sent."""

    __tablename__ = "site_feedback"
    __table_args__ = (Index("ix_site_feedback_site_at", "site_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    author: Mapped[str] = mapped_column(String(100), default="")
    source: Mapped[str] = mapped_column(String(16), default="operator")
    text: Mapped[str] = mapped_column(String(1000))


class MakeupSession(Base):
    """A class session the make-up sweep has handled: what it decided (``owed``, ``awaiting_approval``, ``off``,
    ``nothing_owed``), the make-up programme it published and the deadline."""

    __tablename__ = "makeup_sessions"

    session_key: Mapped[str] = mapped_column(String(160), primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(24))
    programme: Mapped[Optional[str]] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    handled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    approved_by: Mapped[str] = mapped_column(String(100), default="")


class MakeupOwed(Base):
    """A lesson a member owes because they missed a class: delivered to their radio, or on the operator's list."""

    __tablename__ = "makeups_owed"
    __table_args__ = (UniqueConstraint("session_key", "member_id", "lesson_id", name="uq_makeup_owed"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_key: Mapped[str] = mapped_column(String(160), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    lesson_id: Mapped[int] = mapped_column(Integer)
    radio: Mapped[Optional[str]] = mapped_column(String(64))
