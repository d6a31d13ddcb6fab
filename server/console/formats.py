"""How the console writes times, numbers and sizes: the county's time zone and the user's language's digits."""

from __future__ import annotations

from datetime import datetime
from typing import Optional
from zoneinfo import ZoneInfo

from babel.numbers import format_decimal
from flask import Flask
from flask_babel import get_locale, lazy_gettext as _l
from flask_login import current_user

from server.accounts.auth import Actor


def county_time(value: Optional[datetime], zone: str, pattern: str = "%Y-%m-%d %H:%M") -> str:
    """VALUE (aware, UTC) as a wall-clock time in the county's zone ZONE; empty for None."""
    return "" if value is None else value.astimezone(ZoneInfo(zone)).strftime(pattern)


def number(value, digits: int = 0) -> str:
    """VALUE with the locale's grouping (12,345 / 12,345.6)."""
    if value is None:
        return "–"
    return format_decimal(round(value, digits), locale=str(get_locale() or "zh_CN"))


def size(value: Optional[int]) -> str:
    """A byte count in KB, MB or GB."""
    if value is None:
        return "–"
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if value >= factor:
            return f"{number(value / factor, 1)} {unit}"
    return f"{number(value)} B"


def duration(seconds: Optional[float]) -> str:
    """Seconds as m:ss or h:mm:ss."""
    if seconds is None:
        return "–"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


ROLE_NAMES = {"admin": _l("admin"), "media": _l("media officer"), "operator": _l("township operator"),
              "viewer": _l("viewer")}
STATE_NAMES = {"processing": _l("processing"), "ready": _l("ready"), "failed": _l("failed"),
               "rejected": _l("rejected"), "queued": _l("queued"), "running": _l("running"), "draft": _l("draft"),
               "published": _l("published"), "superseded": _l("superseded")}


def actor_may(permission: str) -> bool:
    """Whether the signed-in user's role grants PERMISSION (the API's table), to show or hide a link."""
    return current_user.is_authenticated and Actor(None, current_user.username, current_user.role,
                                                   current_user.township).may(permission)


def register(app: Flask) -> None:
    """The filters and helpers templates use."""
    app.jinja_env.globals.update(actor_may=actor_may, get_locale=get_locale,
                                 role_name=lambda r: str(ROLE_NAMES.get(r, r)),
                                 state_name=lambda s: str(STATE_NAMES.get(s, s)))
    zone = app.extensions["lessoncast"].settings.county_timezone
    app.jinja_env.filters.update(county_time=lambda v, p="%Y-%m-%d %H:%M": county_time(v, zone, p), number=number,
                                 size=size, duration=duration)
