"""Staff accounts: signing in with a password, the lock-out after wrong passwords, and what an admin changes.

The console calls these; so could any other front end. Five wrong passwords in a row lock an account for 15
minutes, and the lock-out is written to the audit log. Every change an admin makes to an account is audited too.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Optional

from sqlalchemy import select

from server.accounts.auth import hash_password, verify_password
from server.accounts.models import ROLES, User
from server.accounts.scope import find_township
from server.audit import AuditEntry
from server.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from server.i18n import LANGUAGES, _l, normalise

MAX_FAILURES = 5
LOCK_FOR = timedelta(minutes=15)
MIN_PASSWORD = 10


def authenticate(services, username: str, password: str) -> User:
    """The user USERNAME when PASSWORD is theirs; Unauthenticated otherwise (the same words for an unknown user and
    a wrong password), Forbidden while locked or disabled."""
    now = services.clock()
    with services.db.session() as session:
        user = session.scalar(select(User).where(User.username == username.strip()))
        if user is None:
            raise Unauthenticated("bad_login", _l("The username or the password is wrong."))
        if user.disabled_at is not None:
            raise Forbidden("account_disabled", _l("This account is disabled. Ask an admin to enable it."))
        if user.locked_until is not None and user.locked_until > now:
            minutes = max(1, round((user.locked_until - now).total_seconds() / 60))
            raise Forbidden("account_locked", _l("Too many wrong passwords: this account is locked for {minutes} more "
                            "minutes. Wait, or ask an admin to reset the password.", minutes=minutes), minutes=minutes)
        if not verify_password(user, password):
            user.failed_logins += 1
            if user.failed_logins >= MAX_FAILURES:
                user.failed_logins, user.locked_until = 0, now + LOCK_FOR
                session.add(AuditEntry(at=now, actor=user.username, action="account.locked", subject=user.username,
                                       details={"failures": MAX_FAILURES, "minutes": LOCK_FOR.seconds // 60}))
                session.commit()
                raise Forbidden("account_locked", _l("Too many wrong passwords: this account is locked for "
                                "{minutes} minutes.", minutes=LOCK_FOR.seconds // 60),
                                minutes=LOCK_FOR.seconds // 60)
            session.commit()
            raise Unauthenticated("bad_login", _l("The username or the password is wrong."))
        user.failed_logins, user.locked_until = 0, None
        session.flush()
        session.expunge(user)
        return user


def _password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise Invalid("short_password", _l("The password has {count} characters; use at least {minimum}.",
                                         count=len(password), minimum=MIN_PASSWORD),
                      field="password")
    return hash_password(password)


def _township(session, role: str, township: Optional[str]) -> Optional[str]:
    if role not in ROLES:
        raise Invalid("bad_role", _l("Unknown role {role!r}; choose one of {roles}.", role=role,
                                           roles=", ".join(ROLES)), field="role")
    if role == "operator":
        if not township:
            raise Invalid("township_required", _l("An operator needs a township: operators see one township."),
                          field="township")
        try:
            return find_township(session, township).code
        except ValueError as exc:
            raise Invalid("unknown_township", exc.args[0], field="township") from None
    return None


def get_user(session, user_id: int) -> User:
    """The user with USER_ID; NotFound otherwise."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("no_such_user", _l("There is no user {user_id}.", user_id=user_id))
    return user


def create_user(services, username: str, role: str, township: Optional[str], actor: str) -> tuple[int, str]:
    """Create an account with a generated password; return (id, password), the password shown once."""
    username = username.strip()
    if not username or len(username) > 100 or any(ch.isspace() for ch in username):
        raise Invalid("bad_username", _l("username: 1 to 100 characters without spaces."), field="username")
    password = secrets.token_urlsafe(12)
    with services.db.session() as session:
        if session.scalar(select(User.id).where(User.username == username)) is not None:
            raise Conflict("user_exists", _l("There is already a user {username}.", username=username))
        user = User(username=username, password_hash=hash_password(password), role=role,
                    township=_township(session, role, township), created_at=services.clock())
        session.add(user)
        session.add(AuditEntry(at=services.clock(), actor=actor, action="account.create", subject=username,
                               details={"role": role, "township": user.township}))
        session.flush()
        return user.id, password


def update_user(services, user_id: int, role: str, township: Optional[str], enabled: bool, actor: str) -> None:
    """Set an account's role, township and whether it may sign in; an admin cannot disable or demote themself."""
    with services.db.session() as session:
        user = get_user(session, user_id)
        if user.username == actor and (role != "admin" or not enabled):
            raise Conflict("own_account", _l("You cannot demote or disable your own account; ask another admin."))
        user.township = _township(session, role, township)
        user.role = role
        now = services.clock()
        if enabled and user.disabled_at is not None:
            user.disabled_at, user.locked_until, user.failed_logins = None, None, 0
        elif not enabled and user.disabled_at is None:
            user.disabled_at = now
            user.session_generation += 1
        session.add(AuditEntry(at=now, actor=actor, action="account.update", subject=user.username,
                               details={"role": role, "township": user.township, "enabled": enabled}))


def reset_password(services, user_id: int, actor: str) -> str:
    """A new generated password for an account (shown once); it also ends a lock-out and signs the user out."""
    password = secrets.token_urlsafe(12)
    with services.db.session() as session:
        user = get_user(session, user_id)
        user.password_hash, user.locked_until, user.failed_logins = hash_password(password), None, 0
        user.session_generation += 1
        session.add(AuditEntry(at=services.clock(), actor=actor, action="account.reset_password",
                               subject=user.username))
    return password


def change_password(services, user_id: int, old: str, new: str) -> int:
    """Change one's own password after checking the old one; return the new session generation."""
    with services.db.session() as session:
        user = get_user(session, user_id)
        if not verify_password(user, old):
            raise Invalid("bad_password", _l("The current password is wrong."), field="old")
        user.password_hash = _password(new)
        user.session_generation += 1
        session.add(AuditEntry(at=services.clock(), actor=user.username, action="account.password",
                               subject=user.username))
        return user.session_generation


def set_language(services, user_id: int, language: str) -> str:
    """Keep the user's console language (zh_CN or en); return it."""
    try:
        language = normalise(language)
    except ValueError as exc:
        raise Invalid("bad_language", _l("language {language!r}: lessoncast speaks zh_CN (简体中文) and en (English)",
                                          language=language), field="language") from None
    assert language in LANGUAGES
    with services.db.session() as session:
        get_user(session, user_id).language = language
    return language
