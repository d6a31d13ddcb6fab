"""SQLAlchemy models for staff accounts: users and their API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UTCDateTime

ROLES = ("admin", "media", "operator", "viewer", "monitor")


class User(Base):
    """A staff account for the console, with an argon2 password hash."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    township: Mapped[Optional[str]] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The console language the user chose (zh_CN or en); None: the browser's, else zh_CN.
    language: Mapped[Optional[str]] = mapped_column(String(8))
    # Wrong passwords in a row; the fifth locks the account until locked_until (server/accounts/users.py).
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    disabled_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # Changes with the password or a disable: a console session made before it is no longer valid.
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ApiToken(Base):
    """A bearer token for the API. Only the token's sha256 is stored; the token itself is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    # An operator token's township code (see server/accounts/scope.py).
    township: Mapped[Optional[str]] = mapped_column(String(100))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    revoked_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # None: never expires. Operator tokens get a default lifetime (LESSONCAST_OPERATOR_TOKEN_DAYS).
    expires_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
