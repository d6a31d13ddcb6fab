"""A simulated fleet: enrolled agent stores turned into agents on simulated hardware, run by one ``Mux``, with the
behaviour of the people around them, and a summary of where the fleet stands.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable, Optional

from device_agent.agent import Agent, AgentOptions
from device_agent.fleet.behaviour import Behaviour, Counts, Habits
from device_agent.fleet.mux import Mux, SimulatedDevice
from device_agent.link import LinkOptions
from device_agent.store import AgentStore
from firmware_stub.sim import SimClock, sim_hardware


def fleet_options() -> AgentOptions:
    """A device's timers; the ones that wait on the real world (acks, reconnects) are real seconds already."""
    return AgentOptions(tick_s=10.0, progress_interval_s=60.0, batch_size=200, window=5, resend_after_s=30.0,
                        link=LinkOptions(backoff_base_s=1.0, backoff_cap_s=60.0))


@dataclass
class Site:
    """What the behaviours need to know about a site: its members' numbers (QR check-ins, radio holders)."""

    code: str
    members: tuple[str, ...] = ()


def build(mux: Mux, stores: Iterable[AgentStore], *, seed: int = 0, habits: Habits = Habits(),
          members: Optional[dict[str, tuple[str, ...]]] = None, site_of: Optional[dict[str, str]] = None,
          handover: Optional[Callable[[str, str], None]] = None, behave: bool = True,
          start: Optional[datetime] = None, options: Optional[AgentOptions] = None) -> list[SimulatedDevice]:
    """One SimulatedDevice per store, added to MUX (started); MEMBERS by site and SITE_OF by device feed the
    behaviours' check-ins and handovers. OPTIONS replace ``fleet_options()`` (a test's shorter timers)."""
    rng = random.Random(seed)
    start = start or datetime.now(timezone.utc)
    members, site_of = members or {}, site_of or {}
    out = []
    for store in stores:
        kind = store.credentials()["kind"]
        clock = SimClock(start, speed=mux.speed)
        hw = sim_hardware(kind, store.media_dir, clock=clock)
        holder: list = []
        agent = Agent(store, hw, options or fleet_options(), rng=random.Random(rng.random()),
                      link_factory=mux.link_factory, spawn=mux.spawn_for(holder))
        agent.link.rng = random.Random(rng.random())
        people = members.get(site_of.get(agent.device, ""), ())
        behaviour = Behaviour(kind, random.Random(rng.random()), habits, Counts(), qr_codes=people, holders=people,
                              handover=handover) if behave else None
        device = SimulatedDevice(agent, behaviour)
        holder.append(device)
        mux.add(device)
        out.append(device)
    return out


def summary(devices: list[SimulatedDevice]) -> dict:
    """Where the fleet stands: online, manifest versions, events recorded and still unacked, behaviour counts."""
    versions = Counter(d.agent.manifest.version if d.agent.manifest else None for d in devices)
    counts = Counter()
    for d in devices:
        if d.behaviour is not None:
            counts.update({k: v for k, v in vars(d.behaviour.counts).items()})
    return {
        "devices": len(devices),
        "online": sum(1 for d in devices if d.agent.link.connected.is_set()),
        "out_of_range": sum(1 for d in devices if not d.reachable()),
        "manifests": {str(k): v for k, v in sorted(versions.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))},
        "playing": sum(1 for d in devices if d.agent.player.playing is not None),
        "unacked": sum(d.agent.outbox.depth() for d in devices),
        "media_bytes": sum(d.agent.syncer.fetcher.bytes_received for d in devices),
        **dict(counts),
    }


def progress_line(s: dict, elapsed: float) -> str:
    """One line for a person watching: devices online, programme versions, plays, check-ins, unacked events."""
    manifests = ", ".join(f"v{k}: {v}" for k, v in s["manifests"].items() if k != "None")
    return (f"{elapsed:6.0f} s  online {s['online']}/{s['devices']}  out of range {s['out_of_range']}  "
            f"programme [{manifests or 'none yet'}]  playing {s['playing']}  presses {s.get('presses', 0)}  "
            f"check-ins {s.get('checkins', 0)}  unacked events {s['unacked']}")
