"""Health of the stack: is the database reachable, are a worker and an ingest alive (and busy, idle or stalled),
does the broker answer."""

from __future__ import annotations

import socket
from datetime import datetime
from typing import Any, Optional
from urllib.parse import urlparse

from sqlalchemy import select, text

from playlists.trust import TrustError
from server.health.beats import SILENCE_S, STALL_S, read_file_beats
from server.health.models import ProcessBeat
from server.programmes import trust as trust_service
from server.services import Services



def check_database(services: Services) -> dict[str, Any]:
    """Whether a trivial query answers."""
    try:
        with services.db.session() as session:
            session.execute(text("SELECT 1"))
        return {"up": True}
    except Exception as exc:  # reported, not swallowed: the reason goes into the health answer
        return {"up": False, "error": f"{type(exc).__name__}: {exc}"}


def _from_files(services: Services, name: str) -> Optional[dict[str, Any]]:
    """NAME's health from the beat files of its processes on this host; None when none beat recently."""
    now = services.clock()

    def age(value) -> Optional[float]:
        if value is None:
            return None
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        return (now - moment).total_seconds()

    beats = [b for b in read_file_beats(services, name) if age(b["seen_at"]) <= SILENCE_S]
    if not beats:
        return None
    part: dict[str, Any] = {"up": True, "last_seen": beats[0]["seen_at"].isoformat(), "processes": len(beats),
                            "state": "busy" if any(b.get("state") == "busy" for b in beats) else "idle"}
    if any("waiting" in b for b in beats):
        part["waiting"] = sum(b.get("waiting", 0) for b in beats)
        part["shed"] = sum(b.get("shed", 0) for b in beats)
    # Stalled: work waits and the process finished none for STALL_S (since it last finished some, or since it
    # became busy). Busy processes that make progress are up.
    stalled = []
    for b in beats:
        progress = [a for a in (age(b.get("stored_at")), age(b.get("busy_since"))) if a is not None]
        if b.get("waiting") and progress and min(progress) > STALL_S:
            stalled.append(min(progress))
    if stalled and len(stalled) == len(beats):
        part.update(up=False, state="stalled",
                    error=f"{part['waiting']} waiting and nothing finished for {min(stalled):.0f} s; see the "
                          f"{name} log (is the database locked or down?)")
    return part


def _check_beat(services: Services, name: str) -> dict[str, Any]:
    """Whether the process NAME ("worker", "ingest") has sent a heartbeat recently, and whether it is busy."""
    from_files = _from_files(services, name)
    if from_files is not None:
        return from_files
    try:  # a process on another host (PostgreSQL deployments) beats only in the database
        with services.db.session() as session:
            seen = session.scalar(select(ProcessBeat.seen_at).where(ProcessBeat.name == name))
    except Exception as exc:
        return {"up": False, "error": f"cannot read heartbeats: {exc}"}
    if seen is None:
        return {"up": False, "error": f"no {name} has ever started; run 'lessoncast run' or 'lessoncast {name}'"}
    age = (services.clock() - seen).total_seconds()
    if age > SILENCE_S:
        return {"up": False, "error": f"last {name} heartbeat {age:.0f} s ago", "last_seen": seen.isoformat()}
    return {"up": True, "last_seen": seen.isoformat()}


def check_worker(services: Services) -> dict[str, Any]:
    """Whether a worker has sent a heartbeat recently."""
    return _check_beat(services, "worker")


def check_ingest(services: Services) -> dict[str, Any]:
    """Whether an event ingest has sent a heartbeat recently."""
    return _check_beat(services, "ingest")


def broker_address(services: Services) -> tuple[str, int]:
    """Host and port of the broker in use (external URL, or the one lessoncast run starts)."""
    url = services.settings.mqtt_url
    if url:
        parsed = urlparse(url)
        return parsed.hostname or "127.0.0.1", parsed.port or (8883 if parsed.scheme == "mqtts" else 1883)
    return services.settings.mqtt_host, services.settings.mqtt_port


def check_broker(services: Services) -> dict[str, Any]:
    """Whether the broker accepts a TCP connection."""
    host, port = broker_address(services)
    try:
        with socket.create_connection((host, port), timeout=2):
            return {"up": True, "address": f"{host}:{port}"}
    except OSError as exc:
        return {"up": False, "address": f"{host}:{port}", "error": str(exc)}


def trust_warnings(services: Services) -> list[str]:
    """Keys or signed metadata that expire within 30 days (they do not make the server unhealthy, yet)."""
    try:
        return trust_service.warnings(services)
    except TrustError as exc:
        return [f"the TUF repository cannot be read: {exc}"]


def report(services: Services) -> tuple[dict[str, Any], bool]:
    """The health document and whether everything is up, with warnings staff should act on."""
    parts = {"web": {"up": True}, "database": check_database(services), "worker": check_worker(services),
             "broker": check_broker(services), "ingest": check_ingest(services)}
    ok = all(part["up"] for part in parts.values())
    down = [name for name, part in parts.items() if not part["up"]]
    return {"ok": ok, "down": down, **parts, "warnings": trust_warnings(services)}, ok


