"""The event bodies the agent records: plays, check-ins, command results and errors (docs/PROTOCOL.md §5.4).

Every event carries the raw device time, the corrected time and the last server offset, so the server can trust
when a play happened even if the device clock was reset.
"""

from __future__ import annotations

from typing import Any, Optional

from playlists.manifest import format_utc


def _stamp(time) -> dict[str, Any]:
    raw = time.clock.now()
    return {"device_time": format_utc(raw), "time": format_utc(time.now()), "clock_offset": time.offset}


def play(time, *, phase: str, play_id: str, item, start: float, end: float, volume: int, muted: bool,
         trigger: str, started_at: str, slot_kind: Optional[str] = None) -> dict[str, Any]:
    """A play event covering the positions START..END of ITEM's rendition.

    A play the schedule started says which kind of slot it was (``class`` or ``broadcast``): the server counts a
    class slot as a class session and the daily broadcast only as broadcast coverage.
    """
    slot = {"slot_kind": slot_kind} if slot_kind else {}
    return {"type": "play", "phase": phase, "play_id": play_id, "programme": item["programme"],
            "lesson": item["lesson"], "sha256": item["sha256"], "start_position": round(start, 2),
            "end_position": round(end, 2), "listened_seconds": round(max(0.0, end - start), 2),
            "volume": volume, "muted": muted, "trigger": trigger, "started_at": started_at, **slot, **_stamp(time)}


def checkin(time, method: str, credential: str) -> dict[str, Any]:
    """A member checked in at a terminal with a card or QR code."""
    return {"type": "checkin", "method": method, "credential": credential, **_stamp(time)}


def command(time, command_id: Optional[str], name: Optional[str], result: str, message: str = "") -> dict[str, Any]:
    """The outcome of a remote command."""
    return {"type": "command", "command": command_id, "name": name, "result": result, "message": message,
            **_stamp(time)}


def error(time, code: str, message: str) -> dict[str, Any]:
    """Something a staff member should know went wrong on the device."""
    return {"type": "error", "code": code, "message": message[:500], **_stamp(time)}


def update(time, result: str, version, reason: str) -> dict[str, Any]:
    """An agent update step: installed, healthy, refused, failed or rolled_back (with why)."""
    return {"type": "update", "result": result, "version": version, "reason": reason[:500], **_stamp(time)}
