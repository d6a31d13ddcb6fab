"""Publishing: compute every device's channel, build each channel's manifest, sign, and tell the devices.

``plan`` is read-only and gives the preview (devices affected, items added and removed, bytes per device);
``publish`` applies the same plan: new manifest versions, TUF metadata signed, each moved device's retained
config and each changed channel's retained notify queued and flushed to the broker, and an audit entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, time as dtime, timedelta
from typing import Any, Optional
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from playlists import topics
from playlists.channels import channel_id
from playlists.manifest import SCHEMA, build_manifest, canonical_json, media_of, parse_manifest, reads_schema
from playlists.model import Audience
from playlists.payloads import Notify, encode
from server.audit import AuditEntry
from server.devices import registry as devices_mod
from server.devices.models import Device, DeviceAssignment
from server.events.models import DeviceStatus
from server.errors import Conflict
from server.file_lock import exclusive
from server.i18n import _l
from server.messaging import broker, retained
from server.programmes import service as programmes
from server.programmes.models import Channel, Programme
from server.programmes.trust import repository


def fetch_time(window: Optional[tuple[str, str]], zone: str, now: datetime) -> datetime:
    """When a device with download WINDOW ("HH:MM", "HH:MM", in ZONE; None: any time) fetches a manifest notified
    at NOW: at once inside the window, else at the window's next start. In ZONE's time."""
    local = now.astimezone(ZoneInfo(zone))
    if not window:
        return local
    start, end = (dtime.fromisoformat(t) for t in window)
    at = local.time()
    if (start <= at < end) if start < end else (at >= start or at < end):
        return local
    day = local.date() if at < start else local.date() + timedelta(days=1)
    return datetime.combine(day, start, tzinfo=local.tzinfo)


def manifest_target(channel: str) -> str:
    """The TUF target path of a channel's manifest."""
    return f"channels/{channel}/manifest.json"


def _content(manifest: dict[str, Any]) -> dict[str, Any]:
    # What a device plays; the version and issue time alone do not make a new manifest.
    return {k: v for k, v in manifest.items() if k not in ("version", "issued_at")}


@dataclass
class ChannelPlan:
    """One channel's outcome: its devices, the manifest it will carry, and what changes for them."""

    id: str
    audience: Audience
    devices: list[str]
    old_version: int
    version: int
    manifest: bytes
    changed: bool
    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    download_bytes: int = 0
    schema: int = SCHEMA
    old_agents: list[str] = field(default_factory=list)  # devices whose agent refuses this manifest's schema


@dataclass
class PublishPlan:
    """The whole publish: channels, devices that move channel, and the programme being published."""

    programme: Optional[Programme]
    channels: dict[str, ChannelPlan]
    moved: dict[str, tuple[Optional[str], str]]
    problems: list[str]
    now: Optional[datetime] = None
    windows: dict[str, tuple[Optional[tuple[str, str]], str]] = field(default_factory=dict)  # uid: (window, zone)
    awaiting: int = 0  # devices added and not enrolled yet: they get the manifest when they enrol
    urgent: bool = False

    def _downloads(self, affected: list[str]) -> list[dict[str, Any]]:
        """The affected devices by download window: when they fetch (at once if urgent)."""
        groups: dict[tuple, int] = {}
        for uid in affected:
            window, zone = self.windows.get(uid, (None, "UTC"))
            groups[(window, zone)] = groups.get((window, zone), 0) + 1
        out = []
        for (window, zone), count in sorted(groups.items(), key=lambda g: (g[0][1], g[0][0] or ())):
            at = fetch_time(None if self.urgent else window, zone, self.now)
            out.append({"window": list(window) if window else None, "timezone": zone, "devices": count,
                        "fetch_at": at.isoformat(timespec="minutes")})
        return out

    def preview(self) -> dict[str, Any]:
        """The preview staff see before they confirm."""
        changed = [c for c in self.channels.values() if c.changed]
        affected = sorted({uid for c in changed for uid in c.devices} | set(self.moved))
        per_device = {uid: c.download_bytes for c in self.channels.values() for uid in c.devices}
        p = self.programme
        return {
            "programme": None if p is None else {"id": p.id, "code": p.code, "version": p.version},
            "devices_affected": len(affected),
            "devices_total": sum(len(c.devices) for c in self.channels.values()),
            "devices_awaiting_enrolment": self.awaiting,
            "urgent": self.urgent,
            "downloads": self._downloads(affected),
            "channels_changed": len(changed),
            "download_bytes_total": sum(per_device.get(uid, 0) for uid in affected),
            "download_bytes_max": max((c.download_bytes for c in changed), default=0),
            # Affected devices whose last reported agent refuses the new manifest's schema (slot days need 0.4.0):
            # they keep playing what they have until their agent is updated.
            "old_agents": len({uid for c in changed for uid in c.old_agents}),
            "problems": self.problems,
            "channels": [{
                "id": c.id, "kind": c.audience.kind, "language": c.audience.language,
                "groups": sorted(c.audience.groups), "devices": len(c.devices), "version": c.version,
                "changed": c.changed, "added": c.added, "removed": c.removed,
                "download_bytes_per_device": c.download_bytes, "schema": c.schema, "old_agents": len(c.old_agents),
            } for c in sorted(self.channels.values(), key=lambda c: c.id)],
        }


def _item_summary(item: dict[str, Any]) -> dict[str, Any]:
    return {"programme": item["programme"], "position": item["position"], "lesson": item["lesson"],
            "title": item["title"], "bytes": item["length"]}


def _diff(old: Optional[dict[str, Any]], new: dict[str, Any]) -> tuple[list, list, int]:
    """Items added and removed (by programme, position and sha256) and the bytes of the files new to a device,
    with set operations over the manifest dicts (both were built by this server: nothing to re-validate)."""
    def key(item: dict[str, Any]) -> tuple[str, int, str]:
        return (item["programme"], item["position"], item["sha256"])

    old_items = old["items"] if old else []
    old_keys = {key(i) for i in old_items}
    new_keys = {key(i) for i in new["items"]}
    old_files = {i["sha256"] for i in old_items}
    new_files = {i["sha256"]: i["length"] for i in new["items"]}
    return ([_item_summary(i) for i in new["items"] if key(i) not in old_keys],
            [_item_summary(i) for i in old_items if key(i) not in new_keys],
            sum(length for sha, length in new_files.items() if sha not in old_files))


def plan(services, session: Session, programme: Optional[Programme] = None, urgent: bool = False) -> PublishPlan:
    """Work out the publish without changing anything (PROGRAMME is the draft to publish, or None to refresh;
    URGENT: devices download at once rather than in their download window).

    Read-only and unsigned: a handful of bulk queries (devices with their assignments, their group links, the
    held programmes with their items, their lessons with renditions, the channel rows), then per channel one
    manifest build and a set difference against the stored manifest."""
    now = services.clock()
    today, grace = services.today(), services.settings.attendance_grace_days
    problems = programmes.not_ready(session, programme) if programme is not None else []
    held = programmes.plain_all(session, programmes.active(session, today, grace, extra=programme))
    audiences: dict[str, Audience] = {}
    moved: dict[str, tuple[Optional[str], str]] = {}
    members: dict[str, list[str]] = {}
    windows: dict[str, tuple[Optional[tuple[str, str]], str]] = {}
    enrolled = session.scalars(select(Device).where(Device.state == "enrolled").order_by(Device.uid)
                               .options(selectinload(Device.assignments).selectinload(DeviceAssignment.member))).all()
    by_uid = devices_mod.audiences(session, list(enrolled), today)
    for device in enrolled:
        settings = device.settings or devices_mod.DEFAULT_DEVICE_SETTINGS
        window = settings.get("download_window")
        windows[device.uid] = (tuple(window) if window else None,
                               settings.get("timezone") or services.settings.county_timezone)
        audience = by_uid[device.uid]
        channel = channel_id(audience)
        audiences[channel] = audience
        members.setdefault(channel, []).append(device.uid)
        if device.channel != channel:
            moved[device.uid] = (device.channel, channel)
    rows = {row.id: row for row in session.scalars(select(Channel).where(Channel.id.in_(list(audiences))))} \
        if audiences else {}
    channels: dict[str, ChannelPlan] = {}
    for channel, audience in audiences.items():
        row = rows.get(channel)
        old_version = row.manifest_version if row else 0
        old = json.loads(row.manifest) if row and row.manifest else None
        manifest = build_manifest(channel=channel, audience=audience, version=old_version + 1, issued_at=now,
                                  programmes=held, today=today, grace_days=grace)
        changed = old is None or _content(old) != _content(manifest)
        data = canonical_json(manifest) if changed else row.manifest
        plan_ = ChannelPlan(channel, audience, members[channel], old_version,
                            old_version + 1 if changed else old_version, data, changed)
        if changed:
            plan_.added, plan_.removed, plan_.download_bytes = _diff(old, manifest)
            plan_.schema = manifest["schema"]
        channels[channel] = plan_
    _old_agents(session, [c for c in channels.values() if c.changed and c.schema != SCHEMA])
    awaiting = session.scalar(select(func.count()).select_from(Device).where(Device.state == "pending"))
    return PublishPlan(programme, channels, moved, problems, now, windows, awaiting, urgent)


def _old_agents(session: Session, channels: list[ChannelPlan]) -> None:
    """Fill each channel's old_agents: its devices whose last status names an agent too old for its schema (a
    device that never reported its version is not counted: nothing is known of it)."""
    uids = [uid for c in channels for uid in c.devices]
    if not uids:
        return
    versions = dict(session.execute(select(DeviceStatus.device_uid, DeviceStatus.agent_version)
                                    .where(DeviceStatus.device_uid.in_(uids))).all())
    for c in channels:
        c.old_agents = [uid for uid in c.devices if reads_schema(versions.get(uid), c.schema) is False]


def preview(services, ref: Any, urgent: bool = False) -> dict[str, Any]:
    """The preview of publishing programme REF (URGENT: with "download now")."""
    with services.db.session() as session:
        programme = programmes.get(session, ref)
        return plan(services, session, programme if programme.state == "draft" else None, urgent).preview()


def publish(services, ref: Optional[Any], actor: str, urgent: bool = False) -> dict[str, Any]:
    """Publish draft REF (or, with None, refresh every channel after org or device changes); return the preview
    of what was done, with the new TUF versions. URGENT ("download now") tells devices to fetch at once instead
    of in their download window."""
    repo = repository(services)
    # Two staff pressing publish at once must not interleave manifest versions.
    with exclusive(services.data / "publish.lock"), services.db.session() as session:
        programme = programmes.get(session, ref) if ref is not None else None
        if programme is not None and programme.state != "draft":
            raise Conflict("already_published",
                           _l("{code} v{version} is already {state}. Make a new version to change it.",
                              code=programme.code, version=programme.version, state=programme.state))
        result = plan(services, session, programme, urgent)
        if result.problems:
            raise Conflict("lessons_not_ready", _l("Some lessons are not ready: {problems}. Wait for them, or retry "
                                                   "the failed ones, then publish again.",
                                                   problems="; ".join(result.problems)),
                           problems=result.problems)
        now = services.clock()
        manifests = {manifest_target(c.id): c.manifest for c in result.channels.values()}
        media = {}
        for c in result.channels.values():
            for item in media_of(parse_manifest(c.manifest)).values():
                media[item.path] = (item.length, item.sha256)
        versions = repo.publish(manifests, media, now=now)
        if programme is not None:
            if programme.supersedes_id:
                old = session.get(Programme, programme.supersedes_id)
                old.state = "superseded"
            for other in session.scalars(select(Programme).where(Programme.code == programme.code,
                                                                 Programme.state == "published",
                                                                 Programme.id != programme.id)):
                other.state = "superseded"
            programme.state, programme.published_at, programme.published_by = "published", now, actor
        for c in result.channels.values():
            row = session.get(Channel, c.id)
            if row is None:
                row = Channel(id=c.id, kind=c.audience.kind, language=c.audience.language,
                              groups=sorted(c.audience.groups), manifest_version=0, updated_at=now)
                session.add(row)
            if c.changed:
                row.manifest_version, row.manifest, row.updated_at = c.version, c.manifest, now
                retained.put(session, topics.notify(c.id), encode(Notify(
                    channel=c.id, manifest_version=c.version, timestamp_version=versions.timestamp,
                    issued_at=now, urgent=urgent)), now)
        for device in session.scalars(select(Device).where(Device.uid.in_(list(result.moved)))):
            device.channel = result.moved[device.uid][1]
            retained.put(session, topics.config(device.uid), devices_mod.config_payload(services, device), now)
        summary = result.preview()
        summary["tuf"] = {"targets": versions.targets, "snapshot": versions.snapshot,
                          "timestamp": versions.timestamp}
        session.add(AuditEntry(at=now, actor=actor, action="programme.publish" if programme else "channels.refresh",
                               subject=f"{programme.code} v{programme.version}" if programme else "",
                               details={k: summary[k] for k in ("devices_affected", "channels_changed",
                                                                "download_bytes_total", "tuf", "urgent")}
                               | {"changes": [{"channel": ch["id"], "added": ch["added"], "removed": ch["removed"]}
                                              for ch in summary["channels"] if ch["changed"]]}))
    if result.moved:
        broker.apply_auth(services)  # the ACL's channel lines follow the devices
    summary["delivered"] = retained.flush_quietly(services)
    return summary
