"""SQLAlchemy models: lessons, their source files and renditions, jobs, staff accounts and API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.db import Base, UTCDateTime

ROLES = ("admin", "media", "operator", "viewer")


class SourceFile(Base):
    """An uploaded original, identified by the sha256 of its bytes."""

    __tablename__ = "source_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    original_name: Mapped[str] = mapped_column(String(255))
    extension: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    probe: Mapped[dict[str, Any]] = mapped_column(JSON)
    analysis: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    lesson: Mapped[Optional["Lesson"]] = relationship(back_populates="source")


class Lesson(Base):
    """A lesson: metadata from staff, one source file, and the renditions made from it."""

    __tablename__ = "lessons"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    speaker: Mapped[str] = mapped_column(String(100), default="")
    series: Mapped[str] = mapped_column(String(200), default="")
    language: Mapped[str] = mapped_column(String(35), default="cmn")
    description: Mapped[str] = mapped_column(Text, default="")
    # processing -> ready | rejected | failed
    state: Mapped[str] = mapped_column(String(16), default="processing")
    error: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    source_id: Mapped[Optional[int]] = mapped_column(ForeignKey("source_files.id"), unique=True)
    created_by: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    source: Mapped[Optional[SourceFile]] = relationship(back_populates="lesson")
    renditions: Mapped[list["Rendition"]] = relationship(
        back_populates="lesson", order_by="Rendition.id", cascade="all, delete-orphan")


class Rendition(Base):
    """One device-ready encoding of a lesson, stored by the sha256 of its bytes."""

    __tablename__ = "renditions"
    __table_args__ = (UniqueConstraint("lesson_id", "profile"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    lesson_id: Mapped[int] = mapped_column(ForeignKey("lessons.id", ondelete="CASCADE"))
    profile: Mapped[str] = mapped_column(String(32))
    # queued -> running -> ready | failed
    state: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    extension: Mapped[str] = mapped_column(String(8))
    sha256: Mapped[Optional[str]] = mapped_column(String(64), index=True)
    size_bytes: Mapped[Optional[int]] = mapped_column(BigInteger)
    duration_s: Mapped[Optional[float]] = mapped_column(Float)
    loudness_lufs: Mapped[Optional[float]] = mapped_column(Float)
    true_peak_dbtp: Mapped[Optional[float]] = mapped_column(Float)
    poster_sha256: Mapped[Optional[str]] = mapped_column(String(64))
    error: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    lesson: Mapped[Lesson] = relationship(back_populates="renditions")


class Job(Base):
    """A unit of background work. The row, not the queue, is the truth: a lease marks who runs it until when."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    lesson_id: Mapped[Optional[int]] = mapped_column(ForeignKey("lessons.id", ondelete="CASCADE"), index=True)
    rendition_id: Mapped[Optional[int]] = mapped_column(ForeignKey("renditions.id", ondelete="CASCADE"))
    # queued -> running -> done | failed | cancelled
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    lease_owner: Mapped[Optional[str]] = mapped_column(String(100))
    lease_expires_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    enqueued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    finished_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    error: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    log_tail: Mapped[Optional[str]] = mapped_column(Text)


class User(Base):
    """A staff account for the console, with an argon2 password hash."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    township: Mapped[Optional[str]] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiToken(Base):
    """A bearer token for the API. Only the token's sha256 is stored; the token itself is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    # An operator token's township code (see server/scope.py).
    township: Mapped[Optional[str]] = mapped_column(String(100))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    revoked_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # None: never expires. Operator tokens get a default lifetime (LESSONCAST_OPERATOR_TOKEN_DAYS).
    expires_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


class Upload(Base):
    """A resumable (tus) upload in progress: bytes so far, declared length and the lesson metadata."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    length: Mapped[int] = mapped_column(BigInteger)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    filename: Mapped[str] = mapped_column(String(255))
    meta: Mapped[dict[str, Any]] = mapped_column(JSON)
    token_id: Mapped[Optional[int]] = mapped_column(ForeignKey("api_tokens.id"))
    lesson_id: Mapped[Optional[int]] = mapped_column(ForeignKey("lessons.id", ondelete="SET NULL"))
    error: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProcessBeat(Base):
    """A heartbeat from a long-running process (worker, ingest), so /healthz can tell whether it is alive."""

    __tablename__ = "process_beats"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    pid: Mapped[int] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(255))
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime)


# The organisation, device and programme tables live in their own module; importing it here means whoever loads
# the models (Alembic, tests, the app) sees every table.
from server import org_models  # noqa: E402,F401
from server import event_models  # noqa: E402,F401
from server import attendance_models  # noqa: E402,F401


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
