"""SQLAlchemy models for agent releases (signed wheels) and rollouts (a release, stage by stage)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.db import Base, UTCDateTime

ROLLOUT_STATES = ("running", "waiting", "paused", "done", "cancelled")
STAGE_KINDS = ("devices", "township", "county")


class AgentRelease(Base):
    """A version of the device agent registered as TUF targets: its wheel and its dependencies' wheels."""

    __tablename__ = "agent_releases"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(32), unique=True)
    agent_wheel: Mapped[dict[str, Any]] = mapped_column(JSON)  # {filename, length, sha256}
    dependencies: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    reads_state_from: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(100))


class Rollout(Base):
    """A release going out to the fleet in stages; ``current_stage`` is the position of the stage under way."""

    __tablename__ = "agent_rollouts"

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("agent_releases.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), default="running", index=True)
    reason: Mapped[str] = mapped_column(String(500), default="")
    auto_advance: Mapped[bool] = mapped_column(Boolean, default=True)
    allow_downgrade: Mapped[bool] = mapped_column(Boolean, default=False)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    current_stage: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    release: Mapped[AgentRelease] = relationship()
    stages: Mapped[list["RolloutStage"]] = relationship(back_populates="rollout", order_by="RolloutStage.position",
                                                        cascade="all, delete-orphan")


class RolloutStage(Base):
    """One group of a rollout: N devices, a township, or the rest of the county, with its thresholds."""

    __tablename__ = "agent_rollout_stages"

    id: Mapped[int] = mapped_column(primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("agent_rollouts.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    count: Mapped[Optional[int]] = mapped_column(Integer)
    township: Mapped[Optional[str]] = mapped_column(String(64))
    success_pct: Mapped[int] = mapped_column(Integer)
    error_pct: Mapped[int] = mapped_column(Integer)
    time_limit_min: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending, running, passed, stopped
    devices: Mapped[list[str]] = mapped_column(JSON, default=list)
    accepted_failures: Mapped[int] = mapped_column(Integer, default=0)  # failures an admin resumed past
    started_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    finished_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)

    rollout: Mapped[Rollout] = relationship(back_populates="stages")
