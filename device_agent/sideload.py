"""Sideload: load a pack from a USB stick or SD card with the same verification as a network sync, install the agent
release assigned to this device when the pack carries it, and write the device's unacknowledged events back onto the
same medium for ``lessoncast import-events``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from playlists.agent_release import assignment_path
from playlists.manifest import parse_manifest
from playlists.packs import PACK_ROOT, verify_pack

from device_agent.outbox import Outbox
from device_agent.store import AgentStore, write_atomic
from device_agent.timekeeping import TimeKeeper

EVENTS_DIR = "lessoncast-events"


class SideloadError(Exception):
    """The pack cannot be used on this device; the message says why."""


def medium_of(pack: Path) -> Path:
    """The folder on the medium that holds the pack (where the events file goes)."""
    pack = Path(pack)
    if pack.is_file():
        return pack.parent
    return pack.parent if pack.name == PACK_ROOT else pack


def import_pack(store: AgentStore, pack: Path, *, clock=None, updates=None) -> dict[str, Any]:
    """Verify PACK, switch to its programme when it is for this device's channel, install its agent release for this
    device through UPDATES (a ``device_agent.update.SelfUpdate``; None where the agent is not self-installed), and
    export pending events."""
    from firmware_stub.linux import SystemClock

    creds = store.credentials()
    config = store.read_json("config.json") or {}
    time = TimeKeeper(clock or SystemClock(), store)
    work = store.root / "pack-work"
    shutil.rmtree(work, ignore_errors=True)
    try:
        verified = verify_pack(pack, store.trusted_root(), work_dir=work, metadata_dir=store.metadata_dir,
                               reference_time=time.now())
        if config.get("channel") and verified.channel != config["channel"]:
            raise SideloadError(f"the pack is for channel {verified.channel}, this device is on {config['channel']}; "
                                "make a pack for this device's channel")
        manifest = parse_manifest(verified.manifest_bytes)
        time.observe_signed(issued_at=manifest.issued_at)
        for target, path in verified.media.items():
            dest = store.media_file(target)
            if not dest.exists():
                tmp = store.partial_dir / dest.name
                shutil.copyfile(path, tmp)
                tmp.replace(dest)  # verified above; the copy is checked again by size
                if dest.stat().st_size != path.stat().st_size:
                    dest.unlink()
                    raise SideloadError(f"copying {path} failed; try again")
        write_atomic(store.manifest_path, verified.manifest_bytes)
        agent_update = None
        if updates is not None and assignment_path(creds["device"]) in verified.agent:
            # The same check as a network sync, over the pack's verified files; a stick has no data budget.
            outcome = updates.check(verified.tuf, creds["device"], lambda need: "")
            agent_update = {"result": outcome.result, "version": outcome.version, "reason": outcome.reason}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    outbox = Outbox(store.outbox_path)
    acked = 0
    try:
        if verified.acks:
            # Signed by the county: what the server already stored of this device's events (from an earlier stick).
            mine = json.loads(verified.acks).get("acks", {}).get(creds["device"])
            if mine:
                acked = outbox.ack(int(mine["epoch"]), int(mine["seq"]))
        events_file = medium_of(pack) / EVENTS_DIR / f"{creds['device']}.events.jsonl"
        exported = outbox.export(events_file, creds["device"])
    finally:
        outbox.close()
    return {"device": creds["device"], "channel": verified.channel, "manifest_version": manifest.version,
            "media_files": len(verified.media), "events_acked": acked, "events_exported": exported,
            "events_file": str(events_file), "agent_update": agent_update}
