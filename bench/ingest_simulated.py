"""The fleet simulator as the event source of ``bench/ingest.py --source simulate``.

Each enrolled radio becomes a real agent in the simulator (one event loop, the agent's own outbox and delivery:
batches of 200, a window of 5, resends after a silence and after every reconnect). Before the clock starts, each
outbox is filled with EVENTS_PER_DEVICE play events recorded through the outbox as a device records them; the rate
is the events the server acknowledged per second during the measured window, read from the agents' outboxes.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

from device_agent import events as agent_events
from device_agent.enrol import keep_answer
from device_agent.fleet import simulator
from device_agent.fleet.mux import Mux
from device_agent.store import AgentStore
from playlists.manifest import format_utc


def _plays(count: int, lesson: int, rng: random.Random) -> list[dict]:
    """COUNT play events (started, progress..., completed, 30 s apart) as ``device_agent.events.play`` makes them."""
    out, start = [], datetime.now(timezone.utc) - timedelta(days=1)
    item = {"programme": "2026-Q4", "lesson": lesson, "sha256": "5" * 64}
    play_id, started = "", ""
    for n in range(count):
        moment = start + timedelta(seconds=30 * n)
        clock = SimpleNamespace(now=lambda m=moment: m)
        timekeeper = SimpleNamespace(clock=clock, offset=0.0, now=lambda m=moment: m)
        step = n % 120  # an hour's lesson, a progress event every 30 s
        if step == 0:
            play_id, started = str(uuid.UUID(int=rng.getrandbits(128), version=4)), format_utc(moment)
        phase = "started" if step == 0 else "completed" if step == 119 else "progress"
        out.append(agent_events.play(timekeeper, phase=phase, play_id=play_id, item=item, start=30.0 * max(0, step - 1),
                                     end=30.0 * step, volume=70, muted=False, trigger="key", started_at=started))
    return out


def drive(answers: list[dict], root: Path, lesson: int, events_per_device: int, warmup: float,
          seconds: float) -> tuple[float, set[str]]:
    """Run the simulated radios until their outboxes are delivered; (events/s acked in the measured window, the ids
    of every event recorded)."""
    rng = random.Random(0)
    stores = []
    for answer in answers:
        store = AgentStore(root / answer["device"])
        keep_answer(store, answer)
        stores.append(store)
    mux = Mux(speed=1.0, sync_threads=2, spread_s=1.0)
    fleet = simulator.build(mux, stores, behave=False)
    ids: set[str] = set()
    for device in fleet:
        recorded = device.agent.outbox.record_many(_plays(events_per_device, lesson, rng))
        ids.update(e["id"] for e in recorded)

    def acked() -> int:
        return sum(d.agent.outbox.acked(d.agent.outbox.epoch) for d in fleet)

    thread = threading.Thread(target=mux.run, name="fleet", daemon=True)
    thread.start()
    try:
        time.sleep(warmup)
        first, began = acked(), time.monotonic()
        time.sleep(seconds)
        rate = (acked() - first) / (time.monotonic() - began)
        deadline = time.monotonic() + 300
        while sum(d.agent.outbox.depth() for d in fleet) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        mux.stop_event.set()
        thread.join(timeout=30)
        mux.close()
    return rate, ids
