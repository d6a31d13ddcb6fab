"""SQLAlchemy models for programmes, their items, and channels with their last manifest."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Optional

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.db import Base, UTCDateTime

PROGRAMME_STATES = ("draft", "published", "superseded")


class Programme(Base):
    """A quarter's or a campaign's plan. Editable while a draft; frozen once published; superseded, never edited."""

    __tablename__ = "programmes"
    __table_args__ = (UniqueConstraint("code", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=1)
    title: Mapped[str] = mapped_column(String(200))
    valid_from: Mapped[date] = mapped_column(Date)
    valid_until: Mapped[date] = mapped_column(Date)
    slots: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(16), default="draft", index=True)
    supersedes_id: Mapped[Optional[int]] = mapped_column(ForeignKey("programmes.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    published_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    published_by: Mapped[Optional[str]] = mapped_column(String(100))

    items: Mapped[list["ProgrammeItem"]] = relationship(
        back_populates="programme", order_by="ProgrammeItem.position", cascade="all, delete-orphan")


class ProgrammeItem(Base):
    """A lesson in a programme: its place, whether it is mandatory, who it is for and its language variants."""

    __tablename__ = "programme_items"
    __table_args__ = (UniqueConstraint("programme_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programmes.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    lesson_id: Mapped[int] = mapped_column(ForeignKey("lessons.id"))
    mandatory: Mapped[bool] = mapped_column(Boolean, default=True)
    groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    variant_lesson_ids: Mapped[list[int]] = mapped_column(JSON, default=list)

    programme: Mapped[Programme] = relationship(back_populates="items")


class Channel(Base):
    """An audience key's channel and the manifest last published for it."""

    __tablename__ = "channels"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(35))
    groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    manifest_version: Mapped[int] = mapped_column(Integer, default=0)
    manifest: Mapped[Optional[bytes]] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
