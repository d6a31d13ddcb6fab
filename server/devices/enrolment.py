"""Enrolment: a device exchanges its one-time code for credentials, the trust root and its first config.

Above the registry and publishing: enrolling a device of a new audience publishes that audience's channel, while
publishing reads the registry. Refused attempts are counted (``enrol_limit``) so codes cannot be guessed.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.audit import AuditEntry
from server.devices import enrol_limit, registry
from server.devices.models import Device
from server.errors import Conflict, DomainError, Forbidden
from server.i18n import _l
from server.messaging import broker, retained
from server.programmes import publish, trust
from server.programmes.models import Channel


def _refused(session: Session, address: str, prefix: str, now, error: DomainError) -> DomainError:
    """ERROR, once the refused attempt is counted against the address and the code's prefix (and committed)."""
    enrol_limit.record(session, address, prefix, now, error.code)
    session.commit()
    return error


def enrol(services, code: str, address: str = "") -> dict[str, Any]:
    """Exchange a one-time code for the device's credentials, trust root and addresses (the answer is shown once).

    Refused attempts count against the client ADDRESS and the code's first group; past
    ``enrol_attempts_per_hour`` of either, attempts are refused with 429 before the code is looked at."""
    root = trust.root_json(services)  # before anything changes: no keys, no enrolment
    now = services.clock()
    prefix = registry.normalise_code(code)[:enrol_limit.PREFIX_LENGTH]
    with services.db.session() as session:
        enrol_limit.check(session, address, prefix, now, services.settings.enrol_attempts_per_hour)
        digest = registry.code_digest(registry.normalise_code(code))
        device = session.scalar(select(Device).where(Device.enrol_code_sha256 == digest))
        if device is None or device.state == "revoked":
            raise _refused(session, address, prefix, now, Forbidden("bad_enrol_code",
                           _l("This enrolment code is unknown or was already used. Ask the county office for a new "
                              "one ('lessoncast device code DEVICE').")))
        if device.enrol_code_expires_at is None or device.enrol_code_expires_at < now:
            raise _refused(session, address, prefix, now, Forbidden("enrol_code_expired",
                           _l("The enrolment code of {uid} expired on {enrol_code_expires_at:%Y-%m-%d}. Ask the "
                              "county office for a new one.",
                              uid=device.uid, enrol_code_expires_at=device.enrol_code_expires_at)))
        mqtt_password = secrets.token_urlsafe(24)
        http_token = "lcd_" + secrets.token_urlsafe(32)
        device.mqtt_password_hash = broker.password_line(device.uid, mqtt_password).split(":", 1)[1]
        device.http_token_sha256 = registry.code_digest(http_token)
        device.enrol_code_sha256 = device.enrol_code_expires_at = None  # one time only
        if device.enrolled_at is not None:
            # Enrolled before (a replaced SD card, a wiped outbox): a new sequence epoch, so event sequence numbers
            # that start again at 1 are not mistaken for ones the server already stored.
            settings = device.settings or registry.DEFAULT_DEVICE_SETTINGS
            device.settings = {**settings, "sequence_epoch": int(settings.get("sequence_epoch", 1)) + 1}
        device.state, device.enrolled_at = "enrolled", now
        device.first_enrolled_at = device.first_enrolled_at or now
        try:
            registry.refresh_channel(services, session, device)
        except ValueError as exc:  # a setting stored before settings were checked; the code is not used up
            raise Conflict("device_settings_invalid",
                           _l("{exc}. Correct it with PATCH /api/v1/devices/{uid} ({{\"settings\": {{...}}}}), then "
                              "enrol again with the same code.",
                              exc=exc, uid=device.uid)) from None
        session.add(AuditEntry(at=now, actor=device.uid, action="device.enrol", subject=device.uid))
        uid, kind, channel, language = device.uid, device.kind, device.channel, device.language
        config = registry.config_payload(services, device)
    broker.apply_auth(services)
    if not _channel_published(services, channel):
        # A new audience: sign a manifest for it now, so the device has something to verify and play at once.
        publish.publish(services, None, uid)
    retained.flush_quietly(services)
    scheme, host, port = services.settings.device_mqtt
    web = services.settings.web_url
    return {
        "device": uid, "kind": kind, "channel": channel, "language": language,
        "mqtt": {"host": host, "port": port, "tls": scheme == "mqtts", "username": uid, "password": mqtt_password,
                 "client_id": uid},
        "http_token": http_token,
        "root": root,
        "repository_url": f"{web}/tuf/",
        "metadata_url": f"{web}/tuf/metadata/",
        "targets_url": f"{web}/tuf/targets/",
        "media_base_url": (services.settings.media_base_url or web).rstrip("/") + "/",
        "config": json.loads(config),
    }


def _channel_published(services, channel: str) -> bool:
    with services.db.session() as session:
        row = session.get(Channel, channel)
        return row is not None and row.manifest is not None
