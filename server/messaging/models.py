"""SQLAlchemy model of the retained MQTT messages the broker must hold."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UTCDateTime


class RetainedMessage(Base):
    """A retained MQTT message the broker must hold. The row is the truth; a flush sends what the broker lacks."""

    __tablename__ = "retained_messages"

    topic: Mapped[str] = mapped_column(String(200), primary_key=True)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    version: Mapped[int] = mapped_column(Integer, default=1)
    sent_version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
