"""SQLAlchemy models for the organisation (townships, sites, groups, members), devices and programmes.

Kept beside ``server.models`` (lessons and jobs) so each module stays one screen of concepts; both share ``Base``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Optional

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.db import Base, UTCDateTime

DEVICE_KINDS = ("radio", "terminal")
DEVICE_STATES = ("pending", "enrolled", "revoked")
PROGRAMME_STATES = ("draft", "published", "superseded")


class Township(Base):
    """A township of the county; operators are scoped to one."""

    __tablename__ = "townships"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))

    sites: Mapped[list["Site"]] = relationship(back_populates="township", order_by="Site.code")


class Site(Base):
    """A village teaching point, where terminals stand and classes are held."""

    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    township_id: Mapped[int] = mapped_column(ForeignKey("townships.id"), index=True)

    township: Mapped[Township] = relationship(back_populates="sites")


class Group(Base):
    """A named audience: a township, a village, a party branch or a special group (sea branch, retirees...).

    Membership is by site, device or member (``group_links``); hierarchy groups are made from the org data.
    """

    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    township_id: Mapped[Optional[int]] = mapped_column(ForeignKey("townships.id"))


class GroupLink(Base):
    """One site, device or member in a group (exactly one of the three is set)."""

    __tablename__ = "group_links"
    __table_args__ = (UniqueConstraint("group_id", "site_id", "device_id", "member_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), index=True)
    site_id: Mapped[Optional[int]] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[Optional[int]] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    member_id: Mapped[Optional[int]] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)


class Member(Base):
    """A party member, identified by the organisation department's stable member id."""

    __tablename__ = "members"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_no: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    branch: Mapped[str] = mapped_column(String(100), default="")
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    card_token: Mapped[Optional[str]] = mapped_column(String(128), unique=True)
    joined_on: Mapped[Optional[date]] = mapped_column(Date)
    left_on: Mapped[Optional[date]] = mapped_column(Date)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


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

    site: Mapped[Site] = relationship()
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
    member: Mapped[Member] = relationship()


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


class RetainedMessage(Base):
    """A retained MQTT message the broker must hold. The row is the truth; a flush sends what the broker lacks."""

    __tablename__ = "retained_messages"

    topic: Mapped[str] = mapped_column(String(200), primary_key=True)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    version: Mapped[int] = mapped_column(Integer, default=1)
    sent_version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    """Who did what, when: publishes, enrolments, revocations, imports and key operations."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(200), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    note: Mapped[str] = mapped_column(Text, default="")
