"""The services one lessoncast process works with: settings, database, stores, job queue and clock.

Built once per process by ``Services.from_settings`` and passed to whoever needs them; nothing here runs at import.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from pathlib import Path
from typing import Callable

from flask import current_app

from media.limits import Limits
from server.accounts.token_use import TokenUse
from server.attendance.rules import Rules
from server.db import Database, utcnow
from server.jobs.queue import build_huey
from server.keyfiles import secret_key
from server.lessons.media_store import FilesystemStore
from server.org.cards import derive_key
from server.settings import Settings


@dataclass
class Services:
    """Everything a request, job or command needs, constructed from settings."""

    settings: Settings
    clock: Callable[[], datetime] = field(default=utcnow)
    disk_free: Callable[[Path], int] = field(default=lambda path: shutil.disk_usage(path).free)

    @cached_property
    def db(self) -> Database:
        """The database for this process."""
        return Database(self.settings.db_url)

    @property
    def data(self) -> Path:
        """The data directory."""
        return self.settings.data_path

    @cached_property
    def token_use(self):
        """When API tokens were last used, written off the request path (server.accounts.token_use.TokenUse)."""
        return TokenUse(self.db, lambda: self.clock())

    @cached_property
    def media(self) -> FilesystemStore:
        """The content-addressed store of renditions and posters."""
        return FilesystemStore(self.data / "media")

    @cached_property
    def sources(self) -> FilesystemStore:
        """The content-addressed store of uploaded originals."""
        return FilesystemStore(self.data / "sources")

    @property
    def upload_dir(self) -> Path:
        """Where uploads stream to before they are checked (same filesystem as the stores, so moves are renames)."""
        path = self.data / "uploads"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def work_dir(self) -> Path:
        """Scratch space for jobs; each job cleans up after itself."""
        path = self.data / "work"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def today(self) -> date:
        """Return the county's calendar day now: the injected clock read in LESSONCAST_COUNTY_TIMEZONE.

        Every "today" the product computes comes from here. The server's UTC date is the previous county day
        until 08:00 in Asia/Shanghai, so a radio handed over at breakfast would credit the wrong holder.
        """
        return self.rules.local_day(self.clock())

    @cached_property
    def rules(self):
        """The attendance thresholds (server.attendance.rules.Rules) from the settings."""
        s = self.settings
        return Rules(completion_threshold=s.attendance_completion, grace_days=s.attendance_grace_days,
                     class_min_s=s.attendance_class_minutes * 60.0, checkin_before_s=s.attendance_checkin_before,
                     checkin_after_s=s.attendance_checkin_after, clock_tolerance_s=s.attendance_clock_tolerance,
                     timezone=s.county_timezone, county_name=s.county_name, card_key=self.card_key)

    @cached_property
    def card_key(self) -> bytes:
        """The key members' card tokens are hashed with (server/org/cards.py), derived from the instance secret."""
        return derive_key(self.settings.secret_key or secret_key(self.data))

    @cached_property
    def limits(self) -> Limits:
        """Media limits from settings."""
        s = self.settings
        return Limits(max_bytes=s.max_upload_size, max_duration_s=s.max_duration, max_width=s.max_width,
                      max_height=s.max_height, max_bitrate=s.max_bitrate)

    @cached_property
    def queue(self):
        """The huey instance (SqliteHuey in the data directory, or RedisHuey when a Redis URL is set)."""
        return build_huey(self)


def app_services() -> Services:
    """The Services of the running Flask app: how views (and the request hooks below them) reach the services."""
    return current_app.extensions["lessoncast"]
