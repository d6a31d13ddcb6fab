"""Channels: devices with the same audience share one, and a channel's playlist is resolved from the programmes.

The server publishes one manifest per channel, not per device, so the channel id must depend only on the audience
key (kind, language, groups) and stay the same across publishes and restarts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from playlists.model import Audience, Item, LessonVersion, Programme, Rendition


@dataclass(frozen=True)
class Channel:
    """A set of devices that share one audience and therefore one manifest."""

    id: str
    audience: Audience
    devices: tuple[str, ...]


@dataclass(frozen=True)
class PlaylistEntry:
    """One lesson a channel's devices get: which programme item, which language version and which file."""

    programme_id: int
    programme_code: str
    programme_version: int
    position: int
    lesson_id: int
    title: str
    language: str
    mandatory: bool
    rendition: Rendition
    valid_from: date
    valid_until: date


@dataclass(frozen=True)
class SkippedItem:
    """An item the audience should get but cannot, and why (so staff can fix the lesson before devices miss it)."""

    programme_id: int
    programme_code: str
    position: int
    lesson_id: int
    reason: str


@dataclass(frozen=True)
class Playlist:
    """The resolved entries of an audience, and the targeted items that had no usable rendition."""

    entries: tuple[PlaylistEntry, ...]
    skipped: tuple[SkippedItem, ...]


def audience_key(a: Audience) -> str:
    """The canonical string of an audience: kind, lowercased language and sorted groups, as compact JSON."""
    # JSON rather than joining with a separator: group keys may contain any character, and the key must not collide.
    return json.dumps([a.kind, a.language.lower(), sorted(a.groups)], ensure_ascii=False, separators=(",", ":"))


def channel_id(a: Audience) -> str:
    """The stable channel id of an audience: "ch-" and the first 16 hex digits of the key's sha256."""
    return "ch-" + hashlib.sha256(audience_key(a).encode("utf-8")).hexdigest()[:16]


def group_channels(devices: Mapping[str, Audience]) -> dict[str, Channel]:
    """Devices grouped into channels by audience key, keyed and ordered by channel id."""
    members: dict[str, list[str]] = {}
    for device in devices:
        members.setdefault(channel_id(devices[device]), []).append(device)
    channels = {}
    for cid in sorted(members):
        names = tuple(sorted(members[cid]))
        # Audiences sharing a key may differ in language case ("CMN"/"cmn"); take the first device's for determinism.
        channels[cid] = Channel(id=cid, audience=devices[names[0]], devices=names)
    return channels


def in_window(programme: Programme, *, today: date, grace_days: int) -> bool:
    """True while devices should hold the programme: until its last day plus the grace days (future ones too)."""
    if grace_days < 0:
        raise ValueError(f"grace_days: {grace_days!r} is negative")
    return programme.valid_until + timedelta(days=grace_days) >= today


def _subtags(tag: str) -> list[str]:
    return tag.lower().split("-")


def choose_version(item: Item, language: str) -> LessonVersion:
    """The item's version in language: exact tag, else the closest sharing the primary subtag, else the main lesson."""
    wanted = _subtags(language)

    def score(version: LessonVersion) -> tuple[int, int, int]:
        have = _subtags(version.language)
        common = 0
        for mine, theirs in zip(wanted, have):
            if mine != theirs:
                break
            common += 1
        # Exact first; then the longest shared prefix ("zh-Hans-CN" prefers "zh-Hans" to "zh-Hant"); then fewer
        # extra subtags ("cmn-Hans" over "cmn-Hans-HK" for a plain "cmn" device).
        return (int(have == wanted), common, -len(have))

    versions = item.versions()
    best = max(versions, key=score)  # max keeps the first of equal scores: the main lesson wins ties
    return best if score(best)[1] >= 1 else item.lesson


def profile_for(kind: str, version: LessonVersion) -> str | None:
    """The rendition profile a device kind plays from version, or None when version has none it can use."""
    if kind == "radio":
        wanted = ("radio",)
    else:
        wanted = ("terminal-video", "terminal-audio")  # a terminal drives a TV: video when there is one
    return next((p for p in wanted if version.rendition(p) is not None), None)


def _targets(item: Item, audience: Audience) -> bool:
    return not item.groups or not item.groups.isdisjoint(audience.groups)


def playlist_for(programmes: Iterable[Programme], audience: Audience, *, today: date,
                 grace_days: int = 30) -> Playlist:
    """Every item of the held programmes that targets the audience, in its language and its kind's rendition."""
    entries: list[PlaylistEntry] = []
    skipped: list[SkippedItem] = []
    held = sorted((p for p in programmes if in_window(p, today=today, grace_days=grace_days)),
                  key=lambda p: (p.valid_from, p.id))
    for programme in held:
        for item in sorted(programme.items, key=lambda i: i.position):
            if not _targets(item, audience):
                continue
            version = choose_version(item, audience.language)
            profile = profile_for(audience.kind, version)
            if profile is None:
                needed = "radio" if audience.kind == "radio" else "terminal-video or terminal-audio"
                skipped.append(SkippedItem(
                    programme_id=programme.id, programme_code=programme.code, position=item.position,
                    lesson_id=version.lesson_id,
                    reason=f"lesson {version.lesson_id} ({version.language}) has no {needed} rendition"))
                continue
            entries.append(PlaylistEntry(
                programme_id=programme.id, programme_code=programme.code, programme_version=programme.version,
                position=item.position, lesson_id=version.lesson_id, title=version.title,
                language=version.language, mandatory=item.mandatory, rendition=version.rendition(profile),
                valid_from=programme.valid_from, valid_until=programme.valid_until))
    return Playlist(entries=tuple(entries), skipped=tuple(skipped))
