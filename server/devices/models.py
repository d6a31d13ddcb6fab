"""SQLAlchemy models for devices (radios and terminals) and which member holds a radio when."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Optional

from sqlalchemy import JSON, Date, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.db import Base, UTCDateTime

DEVICE_KINDS = ("radio", "terminal")
DEVICE_STATES = ("pending", "enrolled", "revoked")


class Device(Base):
    """A radio or terminal. ``uid`` is its MQTT username and client id; secrets are stored only as hashes."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    language: Mapped[str] = mapped_column(String(35), default="cmn")
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    enrol_code_sha256: Mapped[Optional[str]] = mapped_column(String(64), unique=True)
    enrol_code_expires_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # The Mosquitto password-file hash ($7$...), so the file can be rewritten without knowing the password.
    mqtt_password_hash: Mapped[Optional[str]] = mapped_column(String(255))
    http_token_sha256: Mapped[Optional[str]] = mapped_column(String(64), unique=True)
    channel: Mapped[Optional[str]] = mapped_column(String(64), index=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    enrolled_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # Set at the first enrolment and never again: attendance flags device times before it as implausible.
    first_enrolled_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    revoked_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)

    site: Mapped["Site"] = relationship()
    assignments: Mapped[list["DeviceAssignment"]] = relationship(
        back_populates="device", order_by="DeviceAssignment.from_date", cascade="all, delete-orphan")


class DeviceAssignment(Base):
    """Which member held a radio from one date until another (open-ended while ``until_date`` is empty)."""

    __tablename__ = "device_assignments"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    from_date: Mapped[date] = mapped_column(Date)
    until_date: Mapped[Optional[date]] = mapped_column(Date)

    device: Mapped[Device] = relationship(back_populates="assignments")
    member: Mapped["Member"] = relationship()
