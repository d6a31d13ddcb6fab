"""API tokens, staff passwords and role checks. Roles: admin, media, operator (one township), viewer, monitor."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps
from typing import Callable, Optional

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from flask import g, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.accounts.models import ROLES, ApiToken, User
from server.accounts.scope import COUNTY, Scope, find_township
from server.devices.models import Device
from server.errors import Forbidden, Unauthenticated
from server.i18n import _l
from server.services import app_services

# What each role may do. Reading is split by what the data is, so each role reads only what its work needs:
# - read.lessons: lessons, programmes, the publish preview, channels and their manifests (no personal data);
# - read.org: townships, sites and groups (the county's structure, which programmes target);
# - read.devices: devices, their status and ingest record, the fleet table and ingest metrics;
# - read.people: members (names, branches, sites);
# - read.attendance: participation reports, member records, class sessions and their attendees.
# Media staff make and publish lessons: no member, attendance or device data. The viewer role is the organisation
# department, which reads reports and records. Operators read and manage their own township only (its sites, groups
# and members included: they import their villages' lists); services narrow
# every read and write to ``Actor.scope`` (server/accounts/scope.py). The monitor role is a scraper's (Prometheus):
# it reads GET /metrics (read.metrics: counts and durations, no names) and nothing else.
_READ_ALL = frozenset({"read.lessons", "read.org", "read.devices", "read.people", "read.attendance"})
PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": _READ_ALL | {"read.metrics", "lessons.write", "tokens.manage", "devices.manage", "org.write",
                          "programmes.write", "attendance.write"},
    "media": frozenset({"read.lessons", "read.org", "lessons.write", "programmes.write"}),
    "operator": _READ_ALL | {"devices.manage", "attendance.write", "org.write"},
    "viewer": _READ_ALL,
    "monitor": frozenset({"read.metrics"}),
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

    @property
    def scope(self) -> Scope:
        """What this actor may see and change: an operator's township, or the whole county."""
        return Scope(self.township) if self.role == "operator" else COUNTY


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_expiry(role: str, days: Optional[int], operator_days: int, now: datetime) -> Optional[datetime]:
    """When a new token expires: DAYS from NOW when given, else OPERATOR_DAYS for an operator token; None (never)
    for 0 days or another role's token."""
    if days is None:
        days = operator_days if role == "operator" else 0
    if days < 0:
        raise ValueError(f"a token cannot expire {days} days from now; give 1 or more days, or 0 for never")
    return now + timedelta(days=days) if days else None


def create_token(session: Session, *, name: str, role: str, township: Optional[str], now: datetime,
                 expires_at: Optional[datetime] = None) -> str:
    """Create an API token and return it; only its hash is kept, so it can be shown once. An operator token's
    township is given by code (qs) or name (青山镇) and stored as the code; an unknown township is refused."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if role == "operator" and not township:
        raise ValueError("an operator token needs --township: operators see one township")
    if role != "operator" and township:
        raise ValueError(f"only operator tokens have a township; a {role} token covers the whole county")
    if township:
        township = find_township(session, township).code
    if expires_at is not None and expires_at <= now:
        raise ValueError(f"the expiry {expires_at:%Y-%m-%d %H:%M} UTC is not in the future")
    token = "lc_" + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, role=role, township=township, token_sha256=_digest(token), created_at=now,
                         expires_at=expires_at))
    return token


def refuse_expired(row: ApiToken, now: datetime) -> None:
    """Unauthenticated when the token's expiry has passed, saying how to get a new one."""
    if row.expires_at is not None and row.expires_at <= now:
        township = f" --township {row.township}" if row.township else ""
        raise Unauthenticated(
            "token_expired", _l("The API token '{name}' expired on {expires_at:%Y-%m-%d %H:%M} UTC. Ask an admin for "
                                "a new one ('lessoncast token create --role {role}{township} --name NAME').",
                                name=row.name, expires_at=row.expires_at, role=row.role, township=township))


def find_token(session: Session, token: str) -> Optional[ApiToken]:
    """The live token row for a presented token, or None."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_sha256 == _digest(token)))
    return row if row is not None and row.revoked_at is None else None


def find_device(session: Session, token: str) -> Optional[Device]:
    """The enrolled device presenting this HTTP token, or None (revoked devices have none)."""
    device = session.scalar(select(Device).where(Device.http_token_sha256 == _digest(token)))
    return device if device is not None and device.state == "enrolled" else None


def hash_password(password: str) -> str:
    """An argon2id hash of the password."""
    return PasswordHasher().hash(password)


def verify_password(user: User, password: str) -> bool:
    """Whether the password matches the user's argon2 hash."""
    try:
        return PasswordHasher().verify(user.password_hash, password)
    except VerificationError:
        return False


def signed_in_user():
    """The staff user signed in to the console in this request (Flask-Login), or None."""
    from flask import current_app
    from flask_login import current_user

    if getattr(current_app, "login_manager", None) is None or not current_user.is_authenticated:
        return None
    return current_user


def current_actor() -> Actor:
    """The actor for this request, from ``Authorization: Bearer TOKEN`` or else the console's signed-in user (whose
    requests carry a CSRF token, see server/console); 401 when neither."""
    if "actor" in g:
        return g.actor
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        user = signed_in_user()
        if user is not None:  # the console's browser: the same permissions and scope as a token of that role
            g.actor = Actor(None, user.username, user.role, user.township)
            return g.actor
        raise Unauthenticated("unauthenticated",
                              _l("This needs an API token: send 'Authorization: Bearer TOKEN'. Create one with "
                                 "'lessoncast token create --role media --name NAME'."))
    services = app_services()
    if token.strip().startswith("lcd_"):
        with services.db.session() as session:
            device = find_device(session, token.strip())
            if device is None:
                raise Unauthenticated("bad_device_token",
                                      _l("This device token is unknown or the device was revoked. Enrol the device "
                                         "again."))
            g.actor = Actor(None, device.uid, "device", None)
        return g.actor
    with services.db.session() as session:
        row = find_token(session, token.strip())
        if row is None:
            raise Unauthenticated("bad_token", _l("The API token is unknown or revoked. Ask an admin for a new one."))
        refuse_expired(row, services.clock())
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
                raise Forbidden("forbidden",
                                _l("The '{role}' role may not do this (needs '{permission}').",
                                   role=actor.role, permission=permission))
            return view(*args, **kwargs)

        return wrapped

    return decorate
