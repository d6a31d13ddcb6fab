"""Fixtures for trust and pack tests: a county TUF repository in tmp_path with two channels and their media.

ngclient checks expiry against the system clock, so the repository is signed relative to the real current time,
read once per test here (never inside the code under test).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest

from playlists.trust import FileFetcher, open_updater
from playlists.trust_repository import Expiries, Repository, Versions, init_keys

PASSPHRASE = "correct horse battery staple"
BASE = "https://county.example/tuf/"
CHANNEL_A = "channels/ch-0123456789abcdef/manifest.json"
CHANNEL_B = "channels/ch-fedcba9876543210/manifest.json"


def media_target(data: bytes, ext: str = "mp3") -> tuple[str, tuple[int, str]]:
    """The target path and (length, sha256) the server publishes for a media file."""
    sha = hashlib.sha256(data).hexdigest()
    return f"media/{sha}.{ext}", (len(data), sha)


@dataclass
class County:
    """A county's keys and repository, what it published last, and a way to build device updaters over it."""

    tmp: Path
    now: datetime
    keys_dir: Path
    repo_dir: Path
    repo: Repository
    manifests: dict[str, bytes] = field(default_factory=dict)
    media: dict[str, bytes] = field(default_factory=dict)

    def publish(self, manifests: dict[str, bytes] | None = None, media: list[bytes] | None = None) -> Versions:
        """Publish manifests and media (bytes) and remember them."""
        if manifests is not None:
            self.manifests = manifests
        if media is not None:
            self.media = {media_target(m)[0]: m for m in media}
        infos = {path: (len(data), hashlib.sha256(data).hexdigest()) for path, data in self.media.items()}
        return self.repo.publish(self.manifests, infos, now=self.now)

    def root_v1(self) -> bytes:
        """The root.json devices were enrolled with."""
        return (self.repo_dir / "metadata" / "1.root.json").read_bytes()

    def updater(self, device: str = "device", root: bytes | None = None):
        """A fresh ngclient Updater for ``device`` (its metadata cache persists across calls) over the repository."""
        return open_updater(self.tmp / device / "metadata", root or self.root_v1(), f"{BASE}metadata/",
                            f"{BASE}targets/", fetcher=FileFetcher(BASE, self.repo_dir))

    def served(self, name: str) -> Path:
        """A metadata file as the server serves it."""
        return self.repo_dir / "metadata" / name


def real_manifest(channel: str, media: list[bytes], now: datetime) -> bytes:
    """A real channel manifest (as the server builds it) listing MEDIA as radio renditions."""
    from datetime import timedelta

    from playlists.manifest import build_manifest, canonical_json
    from playlists.model import Audience, Item, LessonVersion, Programme, Rendition

    items = tuple(
        Item(position=n, lesson=LessonVersion(n, f"第{n}课", "cmn", (Rendition(
            "radio", media_target(data)[0], len(data), hashlib.sha256(data).hexdigest(), 60.0),)))
        for n, data in enumerate(media, 1))
    today = now.date()
    programme = Programme(1, "2026-Q4", 1, "第四季度", today - timedelta(days=10), today + timedelta(days=60), items)
    return canonical_json(build_manifest(channel=channel, audience=Audience("radio", "cmn", frozenset()), version=1,
                                         issued_at=now, programmes=[programme], today=today, grace_days=30))


def make_county(tmp: Path, now: datetime, *, expiries: Expiries | None = None, root_days: int = 365) -> County:
    """Init keys and publish channel A and B manifests with two media files."""
    keys_dir, repo_dir = tmp / "keys", tmp / "repo"
    init_keys(keys_dir, repo_dir, PASSPHRASE, now=now, root_days=root_days, expiries=expiries)
    county = County(tmp, now, keys_dir, repo_dir, Repository(repo_dir, keys_dir, expiries or Expiries()))
    media = [b"ID3 lesson one audio" * 50, b"ID3 lesson two audio" * 70]
    county.publish({CHANNEL_A: real_manifest("ch-0123456789abcdef", media, now),
                    CHANNEL_B: real_manifest("ch-fedcba9876543210", media[1:], now)}, media)
    return county


@pytest.fixture
def now() -> datetime:
    """The real current time, whole seconds (ngclient compares expiry against the system clock)."""
    return datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture
def county(tmp_path, now) -> County:
    """A county repository at root v1 / targets v2 / snapshot v2 / timestamp v2."""
    return make_county(tmp_path, now)
