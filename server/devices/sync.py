"""Which devices hold their channel's current manifest, from the status each device last reported.

The console's home page counts the devices not yet synced, and the publish page watches them pick a new version
up. A township operator's view is narrowed by the caller with ``Scope.township_filter`` before it gets here.
"""

from __future__ import annotations

from typing import Any, Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.devices.models import Device
from server.events.models import DeviceStatus
from server.org.models import Site, Township
from server.programmes.models import Channel


def _query(township: Optional[str]):
    stmt = (select(Device.uid, Device.name, Site.code, Township.code, Device.channel, Channel.manifest_version,
                   DeviceStatus.manifest_version, DeviceStatus.online, DeviceStatus.received_at)
            .join(Site, Site.id == Device.site_id).join(Township, Township.id == Site.township_id)
            .outerjoin(Channel, Channel.id == Device.channel)
            .outerjoin(DeviceStatus, DeviceStatus.device_uid == Device.uid)
            .where(Device.state == "enrolled"))
    if township is not None:
        stmt = stmt.where(Township.code == township)
    return stmt.order_by(Township.code, Site.code, Device.uid)


def status(session: Session, township: Optional[str]) -> list[dict[str, Any]]:
    """Each enrolled device (of TOWNSHIP, or all): its channel's version, the version it reported, and whether
    those are the same."""
    rows = []
    for uid, name, site, town, channel, current, reported, online, seen in session.execute(_query(township)):
        rows.append({"uid": uid, "name": name, "site": site, "township": town, "channel": channel,
                     "current": current or 0, "reported": reported, "online": bool(online), "seen": seen,
                     "synced": bool(current) and reported == current})
    return rows


def summary(session: Session, township: Optional[str]) -> dict[str, int]:
    """How many enrolled devices there are and how many hold their channel's current manifest."""
    rows = status(session, township)
    return {"total": len(rows), "synced": sum(r["synced"] for r in rows),
            "behind": sum(not r["synced"] for r in rows)}
