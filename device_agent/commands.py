"""Remote commands (resync, play-now, stop, set-volume, reboot) through a dispatch table.

Each command runs at most once (QoS 1 may deliver it twice), an old one is not run late, and each outcome, including
an unknown or malformed command, is recorded as an event with the command id. Nothing here raises on bad input.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, Callable

from device_agent import events

SEEN_FILE = "commands_seen.json"
MAX_AGE = timedelta(hours=24)


class CommandError(Exception):
    """A command could not be carried out; its message goes into the command's event."""


def _resync(agent, cmd: dict[str, Any]) -> str:
    agent.request_sync(force=True)
    return "sync started"


def _check_update(agent, cmd: dict[str, Any]) -> str:
    agent.request_sync(force=False)  # a rollout stage started: look now, but inside the download window
    return "checking for an agent update"


def _play_now(agent, cmd: dict[str, Any]) -> str:
    item = agent.find_item(cmd.get("programme"), cmd.get("position"))
    if item is None:
        raise CommandError(f"no item {cmd.get('programme')} #{cmd.get('position')} in the current programme")
    agent.player.start(item, "command")
    return f"playing {item.title}"


def _stop(agent, cmd: dict[str, Any]) -> str:
    agent.player.stop("stopped")
    return "stopped"


def _set_volume(agent, cmd: dict[str, Any]) -> str:
    volume = cmd.get("volume")
    if not isinstance(volume, int) or isinstance(volume, bool) or not 0 <= volume <= 100:
        raise CommandError(f"volume {volume!r} is not an integer from 0 to 100")
    agent.hw.audio.set_volume(volume)
    return f"volume {volume}"


def _reboot(agent, cmd: dict[str, Any]) -> str:
    agent.request_reboot()
    return "rebooting"


DISPATCH: dict[str, Callable[[Any, dict[str, Any]], str]] = {
    "resync": _resync, "play-now": _play_now, "stop": _stop, "set-volume": _set_volume, "reboot": _reboot,
    "check-update": _check_update,
}


def handle(agent, payload: bytes) -> None:
    """Run one command message and record its outcome."""
    time = agent.time
    try:
        cmd = json.loads(payload)
        if not isinstance(cmd, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        agent.outbox.record(events.command(time, None, None, "malformed", f"unreadable command: {exc}"))
        return
    command_id, name = cmd.get("id"), cmd.get("type")
    if not isinstance(command_id, str) or not command_id:
        agent.outbox.record(events.command(time, None, name, "malformed", "a command needs an 'id'"))
        return
    seen = agent.store.read_json(SEEN_FILE) or []
    if command_id in seen:
        return  # delivered twice: already done
    agent.store.write_json(SEEN_FILE, (seen + [command_id])[-200:])
    issued = cmd.get("issued_at")
    try:
        if issued and time.now() - datetime.fromisoformat(issued.replace("Z", "+00:00")) > MAX_AGE:
            agent.outbox.record(events.command(time, command_id, name, "expired", f"issued at {issued}"))
            return
    except (TypeError, ValueError, AttributeError):  # AttributeError: a number has no .replace
        agent.outbox.record(events.command(time, command_id, name, "malformed", f"bad issued_at {issued!r}"))
        return
    action = DISPATCH.get(name) if isinstance(name, str) else None  # a list or object is not hashable
    if action is None:
        agent.outbox.record(events.command(time, command_id, name, "unknown", f"unknown command type {name!r}"))
        return
    try:
        message = action(agent, cmd)
    except Exception as exc:  # reported as the command's result; the agent keeps running
        agent.outbox.record(events.command(time, command_id, name, "failed", f"{type(exc).__name__}: {exc}"))
        return
    agent.outbox.record(events.command(time, command_id, name, "done", message))
