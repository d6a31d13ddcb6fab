"""Console sessions: sign in and out, the language switch, one's own password, CSRF and the inactivity timeout.

The session cookie is HttpOnly and SameSite=Lax, and Secure when the public URL is https. A session holds the
user's id and their account's session generation, so a password change or a disable ends every other session.
Every write that a browser makes with its cookie (console forms, and the tus upload the console's script drives)
must carry the session's CSRF token; requests with an API token in ``Authorization`` do not use the cookie.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlparse

from flask import Blueprint, Flask, flash, redirect, render_template, request, session as cookie, url_for
from flask_babel import gettext as _
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError, CSRFProtect

from server.accounts import users
from server.accounts.models import User
from server.console.pages import page_errors, signed_in
from server.errors import DomainError
from server.i18n import DEFAULT_LANGUAGE, normalise
from server.services import app_services

bp = Blueprint("console", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static/console")
page_errors(bp)
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class ConsoleUser(UserMixin):
    """The signed-in staff user as the session knows them (a copy of the row, not the row)."""

    id: int
    username: str
    role: str
    township: Optional[str]
    language: Optional[str]
    generation: int

    def get_id(self) -> str:
        """The session's user key: id and session generation."""
        return f"{self.id}:{self.generation}"

    @classmethod
    def of(cls, user: User) -> "ConsoleUser":
        """The session's copy of USER."""
        return cls(user.id, user.username, user.role, user.township, user.language, user.session_generation)


def _load(key: str) -> Optional[ConsoleUser]:
    user_id, _, generation = key.partition(":")
    if not (user_id.isdigit() and generation.isdigit()):
        return None
    with app_services().db.session() as session:
        user = session.get(User, int(user_id))
        if user is None or user.disabled_at is not None or user.session_generation != int(generation):
            return None
        return ConsoleUser.of(user)


def register(app: Flask) -> None:
    """Sessions, CSRF and the locale of the signed-in user on APP."""
    services = app.extensions["lessoncast"]
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=urlparse(services.settings.web_url).scheme == "https",
                      SESSION_COOKIE_NAME="lessoncast_session", WTF_CSRF_CHECK_DEFAULT=False,
                      WTF_CSRF_TIME_LIMIT=None)
    manager = LoginManager(app)
    manager.user_loader(_load)
    csrf = CSRFProtect(app)
    idle = services.settings.console_idle_timeout

    @app.before_request
    def _session_rules():
        if request.headers.get("Authorization"):
            return None  # an API token: no cookie involved, so no CSRF and no console session
        if current_user.is_authenticated:
            now = services.clock().timestamp()
            if now - cookie.get("seen", now) > idle:
                logout_user()
                cookie.clear()
                flash(_("Your session ended after a time without activity. Sign in again."), "info")
                if request.method not in UNSAFE:
                    return redirect(url_for("console.login", next=request.full_path))
            cookie["seen"] = now
        if request.method in UNSAFE and (current_user.is_authenticated or request.blueprint in CONSOLE_BLUEPRINTS):
            csrf.protect()
        return None

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError):
        return render_template("error.html", status=400, message=exc.description), 400


# Blueprints whose writes are console forms (CSRF even before sign-in: the sign-in form itself).
CONSOLE_BLUEPRINTS = frozenset({"console", "console_home", "console_lessons", "console_programmes", "console_admin",
                                "console_org", "console_attendance", "console_devices", "console_rollouts"})


def locale() -> str:
    """The language of this request: ?lang=, the signed-in user's choice, the browser's, then zh_CN."""
    try:
        if request.args.get("lang"):
            return normalise(request.args.get("lang"))
        if current_user.is_authenticated and current_user.language:
            return current_user.language
        return normalise(request.accept_languages.best_match(["zh_CN", "zh", "en"]) or DEFAULT_LANGUAGE)
    except ValueError:
        return DEFAULT_LANGUAGE


def _safe_next(target: Optional[str]) -> str:
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("console_home.home")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The sign-in form; five wrong passwords lock the account for 15 minutes."""
    error = None
    if request.method == "POST":
        try:
            user = users.authenticate(app_services(), request.form.get("username", ""),
                                      request.form.get("password", ""))
        except DomainError as exc:
            error = exc
        else:
            cookie.clear()
            login_user(ConsoleUser.of(user))
            cookie["seen"] = app_services().clock().timestamp()
            return redirect(_safe_next(request.args.get("next")))
    return render_template("login.html", error=error), 401 if error else 200


@bp.post("/logout")
def logout():
    """Sign out."""
    logout_user()
    cookie.clear()
    return redirect(url_for("console.login"))


@bp.post("/language")
@signed_in
def language():
    """Switch the console's language and keep the choice on the user's account."""
    chosen = users.set_language(app_services(), current_user.id, request.form.get("language", ""))
    login_user(ConsoleUser(**{**current_user.__dict__, "language": chosen}))
    return redirect(_safe_next(request.form.get("next")))


@bp.route("/account/password", methods=["GET", "POST"])
@signed_in
def password():
    """Change one's own password (the old one first); other sessions of the account end."""
    if request.method == "POST":
        generation = users.change_password(app_services(), current_user.id, request.form.get("old", ""),
                                           request.form.get("new", ""))
        login_user(ConsoleUser(**{**current_user.__dict__, "generation": generation}))
        flash(_("Your password is changed."), "ok")
        return redirect(url_for("console_home.home"))
    return render_template("password.html")

