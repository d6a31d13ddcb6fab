"""SQLAlchemy models for lessons: their source files, renditions and resumable uploads."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.db import Base, UTCDateTime


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
    # study hours a completed lesson earns; None: its duration at LESSONCAST_TRAINING_MINUTES_PER_HOUR
    credited_hours: Mapped[Optional[float]] = mapped_column(Float)
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
