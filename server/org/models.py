"""SQLAlchemy models for the organisation: townships, sites, groups and members."""

from __future__ import annotations

from datetime import date, datetime
from typing import Optional

from sqlalchemy import JSON, Date, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.db import Base, UTCDateTime


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
