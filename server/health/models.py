"""SQLAlchemy model of the long-running processes' heartbeats."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UTCDateTime


class ProcessBeat(Base):
    """A heartbeat from a long-running process (worker, ingest), so /healthz can tell whether it is alive."""

    __tablename__ = "process_beats"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    pid: Mapped[int] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(255))
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
