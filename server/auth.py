"""API tokens, staff passwords and role checks. Roles: admin, media, operator (one township), viewer."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import wraps
from typing import Callable, Optional

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from flask import current_app, g, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.errors import ApiError
from server.models import ROLES, ApiToken, User

# What each role may do. Operators and viewers read; media staff manage lessons; admins do everything.
PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset({"read", "lessons.write", "tokens.manage", "devices.manage", "org.write",
                        "programmes.write", "attendance.write"}),
    "media": frozenset({"read", "lessons.write", "programmes.write"}),
    # Operators look after their own township's devices and attendance (scoped in the services).
    "operator": frozenset({"read", "devices.manage", "attendance.write"}),
    "viewer": frozenset({"read"}),
    # An enrolled device's HTTP token: it may download (when media need a token) and nothing else.
    "device": frozenset({"device"}),
}


@dataclass(frozen=True)
class Actor:
    """Who is making a request: a token's name, role and (for operators) township."""

    token_id: Optional[int]
    name: str
    role: str
    township: Optional[str] = None

    def may(self, permission: str) -> bool:
        """Whether this actor's role grants the permission."""
        return permission in PERMISSIONS.get(self.role, frozenset())


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, *, name: str, role: str, township: Optional[str], now: datetime) -> str:
    """Create an API token and return it; only its hash is kept, so it can be shown once."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if role == "operator" and not township:
        raise ValueError("an operator token needs --township: operators see one township")
    token = "lc_" + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, role=role, township=township, token_sha256=_digest(token), created_at=now))
    return token


def find_token(session: Session, token: str) -> Optional[ApiToken]:
    """The live token row for a presented token, or None."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_sha256 == _digest(token)))
    return row if row is not None and row.revoked_at is None else None


def hash_password(password: str) -> str:
    """An argon2id hash of the password."""
    return PasswordHasher().hash(password)


def verify_password(user: User, password: str) -> bool:
    """Whether the password matches the user's argon2 hash."""
    try:
        return PasswordHasher().verify(user.password_hash, password)
    except VerificationError:
        return False


def current_actor() -> Actor:
    """The actor for this request, from ``Authorization: Bearer TOKEN``; 401 when missing or unknown."""
    if "actor" in g:
        return g.actor
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthenticated",
                       "This needs an API token: send 'Authorization: Bearer TOKEN'. "
                       "Create one with 'lessoncast token create --role media --name NAME'.")
    services = current_app.extensions["lessoncast"]
    if token.strip().startswith("lcd_"):
        from server.devices import find_by_token

        with services.db.session() as session:
            device = find_by_token(session, token.strip())
            if device is None:
                raise ApiError(401, "bad_device_token",
                               "This device token is unknown or the device was revoked. Enrol the device again.")
            g.actor = Actor(None, device.uid, "device", None)
        return g.actor
    with services.db.session() as session:
        row = find_token(session, token.strip())
        if row is None:
            raise ApiError(401, "bad_token", "The API token is unknown or revoked. Ask an admin for a new one.")
        # Noted, not written here: a read request must not wait for the database's write lock.
        services.token_use.seen(row.id, row.last_used_at)
        g.actor = Actor(row.id, row.name, row.role, row.township)
    return g.actor


def require(permission: str) -> Callable:
    """Decorate a view so that it runs only for an actor whose role grants PERMISSION."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(*args, **kwargs):
            actor = current_actor()
            if not actor.may(permission):
                raise ApiError(403, "forbidden",
                               f"The '{actor.role}' role may not do this (needs '{permission}').")
            return view(*args, **kwargs)

        return wrapped

    return decorate
