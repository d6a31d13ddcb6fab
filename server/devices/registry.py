"""Devices: adding them (singly or from CSV), one-time enrolment codes, enrolment, revocation, radio assignment.

A device's secrets (MQTT password, HTTP token, enrolment code) are shown once and stored only as hashes. Every
change that the broker must know about rewrites its password file and ACL from the database and reloads it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Iterable, Optional

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from playlists import topics
from playlists.channels import channel_id
from playlists.manifest import format_utc
from playlists.model import Audience, is_hhmm, is_language_tag
from playlists.payloads import DeviceConfig, encode
from server import validation
from server.accounts.scope import COUNTY, Scope
from server.audit import AuditEntry
from server.devices.models import DEVICE_KINDS, Device, DeviceAssignment
from server.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, Unavailable
from server.i18n import _l
from server.messaging import broker, retained
from server.messaging.mqtt_link import BrokerAddress, BrokerUnavailable, ServerLink
from server.org.models import Group, GroupLink, Member, Site
from server.org.service import default_site

# Enrolment codes are typed by a technician from paper: no 0/O, 1/I/L, 2/Z, 5/S, 8/B.
CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"
CODE_GROUPS = 3
DEFAULT_DEVICE_SETTINGS: dict[str, Any] = {
    "timezone": "Asia/Shanghai", "volume": 70, "report_interval": 300,
    "download_window": ["00:00", "06:00"], "data_budget_mb": None,
}


def code_digest(text: str) -> str:
    """The sha256 (hex) stored for an enrolment code or a device token, never the secret itself."""
    return hashlib.sha256(text.encode()).hexdigest()


def normalise_code(code: str) -> str:
    """An enrolment code as stored: upper case, without dashes or spaces."""
    return "".join(ch for ch in code.upper() if ch.isalnum())


def new_code() -> str:
    """A fresh one-time enrolment code, e.g. ``K7QX-M3TD-WA9F``."""
    return "-".join("".join(secrets.choice(CODE_ALPHABET) for _ in range(4)) for _ in range(CODE_GROUPS))


def new_uid(kind: str) -> str:
    """A device id: its MQTT username and client id, safe in topics and file names."""
    return f"{kind[0]}-{secrets.token_hex(5)}"


def _issue_code(services, device: Device) -> str:
    code = new_code()
    device.enrol_code_sha256 = code_digest(normalise_code(code))
    device.enrol_code_expires_at = services.clock() + timedelta(days=services.settings.enrol_code_days)
    return code


def _site(session: Session, code: Optional[str], scope: Scope) -> Site:
    if not code:
        if not scope.is_county:  # the default is the county's own site, which no operator manages
            raise Invalid("site_required", _l("site: give the code of the {township} site the device serves; "
                                              "operators add devices to their own township's sites.",
                                              township=scope.township),
                          field="site")
        return default_site(session)
    site = session.scalar(select(Site).where(Site.code == code))
    if site is None:
        raise Invalid("unknown_site", _l("There is no site with code '{code}'. Import the sites first ('lessoncast "
                                         "org import sites.csv') or leave the site empty.",
                                         code=code))
    return scope.check_site(site)


def _group(session: Session, key: str, scope: Scope) -> Group:
    group = session.scalar(select(Group).where(Group.key == key))
    if group is None:
        raise Invalid("unknown_group", _l("There is no group '{key}'.", key=key), field="groups")
    return scope.check_group(session, group)


@dataclass(frozen=True)
class NewDevice:
    """A device just added (or given a new code), with its one-time enrolment code."""

    uid: str
    name: str
    kind: str
    site: str
    code: str


def validate_new(kind: str, name: str, language: str, uid: Optional[str]) -> None:
    """Raise Invalid when a new device's fields are unusable."""
    if kind not in DEVICE_KINDS:
        raise Invalid("bad_kind", _l("Device kind '{kind}' is unknown: use radio or terminal.", kind=kind))
    if not name.strip() or len(name) > 100:
        raise Invalid("bad_name", _l("A device needs a name of 1 to 100 characters."))
    if not is_language_tag(language):
        raise Invalid("bad_language", _l("'{language}' is not a BCP 47 language tag (e.g. cmn, bo, nan, cdo).",
                                         language=language))
    if uid is not None and not topics.is_valid_id(uid):
        raise Invalid("bad_device_id", _l("Device id '{uid}' may hold only letters, digits, '_', '.' and '-'.",
                                          uid=uid))


def add(services, session: Session, *, kind: str, name: str, site_code: Optional[str] = None,
        language: str = "cmn", groups: Iterable[str] = (), member_no: Optional[str] = None,
        uid: Optional[str] = None, actor: str, scope: Scope = COUNTY) -> NewDevice:
    """Add a device in the session (the caller commits) and return it with its enrolment code; its site, groups
    and holder must be in SCOPE."""
    validate_new(kind, name, language, uid)
    site = _site(session, site_code, scope)
    uid = uid or new_uid(kind)
    if session.scalar(select(Device.id).where(Device.uid == uid)) is not None:
        raise Conflict("device_exists", _l("A device with id '{uid}' already exists.", uid=uid))
    now = services.clock()
    device = Device(uid=uid, name=name.strip(), kind=kind, site=site, language=language, state="pending",
                    settings={**DEFAULT_DEVICE_SETTINGS, "timezone": services.settings.county_timezone},
                    created_at=now)
    code = _issue_code(services, device)
    session.add(device)
    session.flush()
    for key in groups:
        session.add(GroupLink(group_id=_group(session, key, scope).id, device_id=device.id))
    if member_no:
        if kind != "radio":
            raise Invalid("not_a_radio", _l("Only radios are assigned to a member; terminals serve a site."))
        assign(services, session, device, member_no, services.today(), scope)
    session.add(AuditEntry(at=now, actor=actor, action="device.add", subject=uid,
                           details={"kind": kind, "site": site.code}))
    return NewDevice(uid, device.name, kind, site.code, code)


def reissue_code(services, uid: str, actor: str, scope: Scope = COUNTY) -> str:
    """Give a device a new enrolment code (a lost paper slip, or a replaced SD card); it must enrol again."""
    with services.db.session() as session:
        device = get(session, uid, scope)
        if device.state == "revoked":
            raise Conflict("device_revoked", _l("Device '{uid}' is revoked; add a new device instead.", uid=uid))
        code = _issue_code(services, device)
        session.add(AuditEntry(at=services.clock(), actor=actor, action="device.code", subject=uid))
    return code


def get(session: Session, uid: str, scope: Scope = COUNTY) -> Device:
    """The device with this id, or NotFound (Forbidden when it stands outside SCOPE)."""
    device = session.scalar(select(Device).where(Device.uid == uid))
    if device is None:
        raise NotFound("no_such_device", _l("There is no device '{uid}'.", uid=uid))
    return scope.check_device(device)


def assign(services, session: Session, device: Device, member_no: str, from_date: date,
           scope: Scope = COUNTY) -> None:
    """Hand a radio to a member (in SCOPE) from FROM_DATE, closing the previous holder's assignment the day before."""
    member = session.scalar(select(Member).where(Member.member_no == member_no))
    if member is None:
        raise Invalid("unknown_member", _l("There is no member '{member_no}'. Import the members first.",
                                           member_no=member_no),
                      field="member")
    scope.check_member(session, member)
    for held in device.assignments:
        if held.until_date is None or held.until_date >= from_date:
            if held.from_date >= from_date:
                raise Conflict("assignment_overlap",
                               _l("{uid} is assigned from {from_date}; assign from a later date.",
                                  uid=device.uid, from_date=held.from_date))
            held.until_date = from_date - timedelta(days=1)
    device.assignments.append(DeviceAssignment(member=member, from_date=from_date))


def member_on(device: Device, day: date) -> Optional[Member]:
    """The member holding a radio on DAY, if any."""
    for held in device.assignments:
        if held.from_date <= day and (held.until_date is None or day <= held.until_date):
            return held.member
    return None


def group_keys(session: Session, device: Device, day: date) -> frozenset[str]:
    """Every group the device belongs to: its own, its site's, and (radios) its current member's."""
    clauses = [GroupLink.device_id == device.id, GroupLink.site_id == device.site_id]
    member = member_on(device, day) if device.kind == "radio" else None
    if member is not None:
        clauses.append(GroupLink.member_id == member.id)
    keys = session.scalars(select(Group.key).join(GroupLink, GroupLink.group_id == Group.id).where(or_(*clauses)))
    return frozenset(keys)


def audience(session: Session, device: Device, day: date) -> Audience:
    """The device's audience key: kind, language and groups."""
    return Audience(kind=device.kind, language=device.language, groups=group_keys(session, device, day))


def audiences(session: Session, devices: list[Device], day: date) -> dict[str, Audience]:
    """Each device's audience by uid, as ``audience`` gives it, with one query for the group links of them all (a
    publish plans every enrolled device at once)."""
    members = {d.id: member_on(d, day) if d.kind == "radio" else None for d in devices}
    device_ids = [d.id for d in devices]
    site_ids = sorted({d.site_id for d in devices})
    member_ids = sorted({m.id for m in members.values() if m is not None})
    by = {"device": {}, "site": {}, "member": {}}
    clauses = [GroupLink.device_id.in_(device_ids), GroupLink.site_id.in_(site_ids)]
    if member_ids:
        clauses.append(GroupLink.member_id.in_(member_ids))
    rows = session.execute(select(GroupLink.device_id, GroupLink.site_id, GroupLink.member_id, Group.key)
                           .join(Group, GroupLink.group_id == Group.id).where(or_(*clauses))) if devices else []
    for device_id, site_id, member_id, key in rows:
        for kind, ref in (("device", device_id), ("site", site_id), ("member", member_id)):
            if ref is not None:
                by[kind].setdefault(ref, set()).add(key)
    result = {}
    for d in devices:
        member = members[d.id]
        keys = by["device"].get(d.id, set()) | by["site"].get(d.site_id, set()) | \
            (by["member"].get(member.id, set()) if member is not None else set())
        result[d.uid] = Audience(kind=d.kind, language=d.language, groups=frozenset(keys))
    return result


def config_payload(services, device: Device) -> bytes:
    """The retained config message for a device."""
    s = device.settings or DEFAULT_DEVICE_SETTINGS
    window = s.get("download_window")
    web = services.settings.web_url
    return encode(DeviceConfig(
        device=device.uid, channel=device.channel, language=device.language,
        timezone=s.get("timezone", services.settings.county_timezone), volume=int(s.get("volume", 70)),
        report_interval=int(s.get("report_interval", 300)),
        download_window=tuple(window) if window else None, data_budget_mb=s.get("data_budget_mb"),
        repository_url=f"{web}/tuf/", media_base_url=(services.settings.media_base_url or web).rstrip("/") + "/",
        sequence_epoch=int(s.get("sequence_epoch", 1)), revoked=device.state == "revoked"))


def refresh_channel(services, session: Session, device: Device) -> bool:
    """Recompute the device's channel from its audience and queue its config; True if the channel changed."""
    channel = channel_id(audience(session, device, services.today()))
    changed = channel != device.channel
    device.channel = channel
    retained.put(session, topics.config(device.uid), config_payload(services, device), services.clock())
    return changed


def revoke(services, uid: str, actor: str, reason: str = "", scope: Scope = COUNTY) -> None:
    """Revoke a device: its broker account and HTTP token stop working at once; its retained config says so."""
    now = services.clock()
    with services.db.session() as session:
        device = get(session, uid, scope)
        if device.state == "revoked":
            return
        device.state, device.revoked_at = "revoked", now
        device.mqtt_password_hash = device.http_token_sha256 = device.enrol_code_sha256 = None
        if device.channel:  # it was enrolled: its retained config says it is revoked
            retained.put(session, topics.config(uid), config_payload(services, device), now)
        session.add(AuditEntry(at=now, actor=actor, action="device.revoke", subject=uid, note=reason))
    broker.apply_auth(services)
    retained.flush_quietly(services)


def device_json(device: Device) -> dict[str, Any]:
    """A device as the API shows it (never its secrets)."""
    return {
        "id": device.uid, "name": device.name, "kind": device.kind, "site": device.site.code,
        "language": device.language, "state": device.state, "channel": device.channel,
        "settings": device.settings, "created_at": device.created_at.isoformat(),
        "enrolled_at": device.enrolled_at.isoformat() if device.enrolled_at else None,
        "revoked_at": device.revoked_at.isoformat() if device.revoked_at else None,
        "assignments": [{"member": a.member.member_no, "from": a.from_date.isoformat(),
                         "until": a.until_date.isoformat() if a.until_date else None} for a in device.assignments],
    }


DEVICE_CSV_COLUMNS = ("kind", "name", "site", "language", "groups", "member", "id")


def import_csv(services, text: str, actor: str, scope: Scope = COUNTY, dry_run: bool = False) -> list[NewDevice]:
    """Add every device of a CSV in one transaction; any bad row refuses the whole file, naming its line. A row
    outside SCOPE makes the refusal a 403. A DRY_RUN checks every row the same way and stores nothing (the
    console's preview); the refusal's ``row_errors`` holds (line, DomainError) pairs for a translated list."""
    import csv as csv_mod

    reader = csv_mod.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    unknown = sorted(set(header) - set(DEVICE_CSV_COLUMNS))
    if not header or unknown or not {"kind", "name"} <= set(header):
        raise Invalid("csv_invalid", _l("line 1: columns must be among {choices} with at least kind and name (found "
                                        "{value}).",
                                        choices=', '.join(DEVICE_CSV_COLUMNS), value=', '.join(header) or 'none'))
    added, errors, row_errors, foreign = [], [], [], False
    with services.db.session() as session:
        for line, row in enumerate(reader, 2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            if not any(row.values()):
                continue
            # No savepoints: pysqlite would commit at the first RELEASE. A bad row may leave a half-added device
            # in the session, and any bad row rolls the whole session back below.
            try:
                added.append(add(services, session, kind=row.get("kind", ""), name=row.get("name", ""),
                                 site_code=row.get("site") or None, language=row.get("language") or "cmn",
                                 groups=[g for g in row.get("groups", "").replace("；", ";").split(";") if g],
                                 member_no=row.get("member") or None, uid=row.get("id") or None, actor=actor,
                                 scope=scope))
            except DomainError as exc:
                errors.append(f"line {line}: {exc.message}")
                row_errors.append((line, exc))
                foreign = foreign or exc.code == "other_township"
        if errors or dry_run:
            session.rollback()
        if errors:
            kind, code = (Forbidden, "other_township") if foreign else (Invalid, "csv_invalid")
            refusal = kind(code, f"{len(errors)} rows have problems; no device was added. " + " ".join(errors),
                           rows=errors)
            refusal.row_errors = row_errors
            raise refusal
    return added


EDITABLE_SETTINGS = {"timezone", "volume", "report_interval", "download_window", "data_budget_mb"}


def update(services, uid: str, changes: dict[str, Any], actor: str, scope: Scope = COUNTY) -> bool:
    """Change a device's site, language, groups, radio holder or settings; True when its config must be re-sent.

    The device, its new site, groups and holder must all be in SCOPE. Returns whether the change can move it to
    another channel (the caller then refreshes the channels)."""
    unknown = sorted(set(changes) - {"name", "site", "language", "groups", "member", "member_from", "settings"})
    if unknown:
        raise Invalid("unknown_field", _l("{value}: not a device field that can change.",
                                          value=unknown[0]), field=unknown[0])
    now = services.clock()
    with services.db.session() as session:
        device = get(session, uid, scope)
        if device.state == "revoked":
            raise Conflict("device_revoked", _l("Device '{uid}' is revoked and cannot change.", uid=uid))
        if "name" in changes:
            validate_new(device.kind, validation.text(changes, "name", default=""), device.language, None)
            device.name = changes["name"].strip()
        if "site" in changes:
            device.site = _site(session, validation.text(changes, "site"), scope)
        if "language" in changes:
            validate_new(device.kind, device.name, validation.text(changes, "language", default=""), None)
            device.language = changes["language"]
        if "groups" in changes:
            keys = validation.strings(changes, "groups") or []
            session.query(GroupLink).filter(GroupLink.device_id == device.id).delete()
            for key in keys:
                session.add(GroupLink(group_id=_group(session, key, scope).id, device_id=device.id))
        if "member" in changes:
            if device.kind != "radio":
                raise Invalid("not_a_radio", _l("Only radios are assigned to a member."), field="member")
            day = (validation.day(changes["member_from"], "member_from") if changes.get("member_from")
                   else services.today())
            assign(services, session, device, validation.text(changes, "member", required=True), day, scope)
        if "settings" in changes:
            settings = validation.mapping(changes, "settings") or {}
            extra = sorted(set(settings) - EDITABLE_SETTINGS)
            if extra:
                raise Invalid("unknown_setting", _l("settings.{value}: not a device setting ({choices}).",
                                                    value=extra[0],
                                                    choices=', '.join(sorted(EDITABLE_SETTINGS))),
                              field=f"settings.{extra[0]}")
            merged = {**(device.settings or DEFAULT_DEVICE_SETTINGS), **check_settings(settings)}
            device.settings = merged
            if device.channel:
                try:
                    payload = config_payload(services, device)
                except ValueError as exc:
                    raise Invalid("bad_setting", str(exc), field="settings") from None
                retained.put(session, topics.config(uid), payload, now)
        session.add(AuditEntry(at=now, actor=actor, action="device.edit", subject=uid,
                               details={"fields": sorted(changes)}))
    return bool({"site", "language", "groups", "member"} & set(changes))


def check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """SETTINGS, each checked the way the device reads it; a 422 naming ``settings.<name>`` otherwise.

    Checked whether or not the device is enrolled yet: a stored bad value would break its enrolment later."""
    if "timezone" in settings:
        validation.time_zone(settings["timezone"], "settings.timezone")
    validation.integer(settings, "volume", 0, 100, field="settings.volume")
    validation.integer(settings, "report_interval", 1, 86400, field="settings.report_interval")
    validation.integer(settings, "data_budget_mb", 0, 10**6, field="settings.data_budget_mb")
    window = settings.get("download_window")
    if window is not None and not (isinstance(window, list) and len(window) == 2 and window[0] != window[1]
                                   and all(isinstance(t, str) and is_hhmm(t) for t in window)):
        raise Invalid("field_invalid", _l("settings.download_window: two different times, e.g. [\"00:00\", "
                                          "\"06:00\"], or null for no window."), field="settings.download_window")
    return settings


COMMAND_TYPES = ("resync", "play-now", "stop", "set-volume", "reboot", "check-update")


def send_command(services, uid: str, body: dict[str, Any], actor: str, expiry_s: int = 86400,
                 scope: Scope = COUNTY) -> dict[str, Any]:
    """Send a command to an enrolled device (QoS 1, MQTT 5 message expiry); return the command with its id.

    The device reports the outcome as a "command" event carrying the same id.
    """
    kind = body.get("type")
    if kind not in COMMAND_TYPES:
        raise Invalid("bad_command", _l("type: '{kind}' is not a command; use one of {choices}.",
                                        kind=kind, choices=', '.join(COMMAND_TYPES)),
                      field="type")
    volume, position = body.get("volume"), body.get("position")
    # PROTOCOL.md: true and false are refused where a number is expected (bool is an int in Python).
    if kind == "set-volume" and not (type(volume) is int and 0 <= volume <= 100):
        raise Invalid("bad_command", _l("volume: an integer from 0 to 100."), field="volume")
    if kind == "play-now" and not isinstance(body.get("programme"), str):
        raise Invalid("bad_command", _l("play-now needs 'programme' (its code) and 'position' (the item number)."),
                      field="programme")
    if kind == "play-now" and not (type(position) is int and 0 <= position < 10_000):
        raise Invalid("bad_command", _l("position: the item number, a whole number from 0."), field="position")
    now = services.clock()
    with services.db.session() as session:
        device = get(session, uid, scope)
        if device.state != "enrolled":
            raise Conflict("not_enrolled", _l("Device '{uid}' is {state}; only enrolled devices take commands.",
                                              uid=uid, state=device.state))
        command = {k: v for k, v in body.items() if k in ("type", "volume", "programme", "position")}
        command |= {"id": f"c-{secrets.token_hex(6)}", "issued_at": format_utc(now)}
        session.add(AuditEntry(at=now, actor=actor, action="device.command", subject=uid, details=command))
    try:
        with ServerLink(BrokerAddress.from_services(services), "command") as link:
            link.publish(topics.cmd(uid), json.dumps(command).encode(), expiry_s=expiry_s)
    except BrokerUnavailable as exc:
        raise Unavailable("broker_unavailable", _l("The command could not be sent: {exc}. Try again shortly.",
                                                   exc=exc)) from None
    return command
