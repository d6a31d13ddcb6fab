"""A county and its devices for end-to-end agent tests: a real Mosquitto, the Flask app on a real port, the ingest,
real ffmpeg-made lessons, and agents on simulated hardware (in a thread, or as `lessoncast agent run` processes).

An agent's SimClock runs in real time (or a little faster) while it talks to the network, which works in real time.
For long stretches of device time without network (days at sea), the test calls ``clock.set_stepped()`` and
``clock.run_for(seconds)``: the clock jumps from one wake-up of the agent's loop to the next, each after the agent
finished its round, so what the device does in those days does not depend on how busy the machine is. A clock
running hundreds of thousands of times faster than real time would skip whatever the agent had no CPU for.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from device_agent.agent import Agent, AgentOptions
from device_agent.enrol import enrol
from device_agent.link import LinkOptions
from device_agent.store import AgentStore
from firmware_stub.sim import SimClock, sim_hardware


def fast_options(**changes) -> AgentOptions:
    """Agent timers short enough for tests."""
    base = dict(tick_s=0.5, progress_interval_s=5.0, batch_size=50, window=5, resend_after_s=2.0,
                link=LinkOptions(backoff_base_s=0.1, backoff_cap_s=1.0))
    return AgentOptions(**{**base, **changes})


def add_and_enrol(services, base_url: str, store_dir: Path, *, kind: str = "radio", site: str = "qs-01",
                  settings: Optional[dict] = None, **fields) -> AgentStore:
    """Add a device on the server and enrol an agent store with its code over HTTP.

    Unless SETTINGS say otherwise the device has no download window, so a notify is synced at once.
    """
    from server.devices import registry as devices

    with services.db.session() as session:
        new = devices.add(services, session, kind=kind, name=f"{kind} {store_dir.name}", site_code=site,
                          actor="test", **fields)
    devices.update(services, new.uid, {"settings": {"download_window": None, **(settings or {})}}, "test")
    store = AgentStore(store_dir)
    enrol(store, base_url, new.code)
    return store


@dataclass
class RunningAgent:
    """An agent in a thread on simulated hardware."""

    agent: Agent
    clock: SimClock
    thread: threading.Thread
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def hw(self):
        return self.agent.hw

    def halt(self) -> None:
        self.stop.set()
        self.agent.wake.set()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive(), "the agent did not stop"


def start_agent(store: AgentStore, *, speed: float = 1.0, options: Optional[AgentOptions] = None,
                clock: Optional[SimClock] = None, total_bytes: int = 8 * 2**30) -> RunningAgent:
    """Run an agent for STORE in a thread on simulated hardware."""
    kind = store.credentials()["kind"]
    clock = clock or SimClock(datetime.now(timezone.utc), speed=speed)
    hw = sim_hardware(kind, store.media_dir, clock=clock, total_bytes=total_bytes)
    agent = Agent(store, hw, options or fast_options())
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), name=f"agent-{store.root.name}", daemon=True)
    running = RunningAgent(agent, clock, thread, stop)
    thread.start()
    return running


def poll(predicate: Callable[[], object], timeout: float, what: str):
    """Poll until PREDICATE is truthy and return its value; fail naming WHAT after TIMEOUT seconds."""
    from tests.e2e.stack import wait_for

    return wait_for(predicate, timeout, what)


def publish_lessons(services, lessons, code: str = "Q4") -> dict:
    """Publish LESSONS as programme CODE for Q4 2026: a first version, or a new version of it."""
    from sqlalchemy import select

    from server.programmes import service as programmes, publish
    from server.programmes.models import Programme

    with services.db.session() as session:
        exists = session.scalar(select(Programme.id).where(Programme.code == code))
    items = [{"lesson": lesson} for lesson in lessons]
    if exists is None:
        pid = programmes.create(services, {"code": code, "title": "第四季度", "valid_from": "2026-10-01",
                                           "valid_until": "2026-12-31", "items": items}, "test")
    else:
        pid = programmes.new_version(services, code, "test")
        programmes.update(services, pid, {"items": items}, "test")
    return publish.publish(services, pid, "test")


def server_events(services, device: str) -> list[tuple[int, int, str]]:
    """(epoch, seq, seq_last, phase/type) of every event the server stored for DEVICE, in order."""
    from sqlalchemy import select

    from server.events.models import DeviceEvent

    with services.db.session() as session:
        rows = session.execute(select(DeviceEvent.epoch, DeviceEvent.seq, DeviceEvent.seq_last, DeviceEvent.body)
                               .where(DeviceEvent.device_uid == device).order_by(DeviceEvent.epoch,
                                                                                 DeviceEvent.seq)).all()
    return [(e, s, sl, body.get("phase") or body.get("type")) for e, s, sl, body in rows]


def completed_at(services, member_no: str, lesson: int):
    """When the server recorded that member MEMBER_NO completed LESSON (their coverage's completion), or None."""
    from sqlalchemy import select

    from server.attendance.models import LessonCoverage
    from server.org.models import Member

    with services.db.session() as session:
        return session.scalar(select(LessonCoverage.completed_at).join(Member, Member.id == LessonCoverage.member_id)
                              .where(Member.member_no == member_no, LessonCoverage.lesson_id == lesson,
                                     LessonCoverage.completed_at.is_not(None)))


def covered_exactly_once(rows) -> set[int]:
    """The sequence numbers the stored events cover; fails if any is covered twice."""
    seen: set[int] = set()
    for _epoch, seq, seq_last, _what in rows:
        for n in range(seq, seq_last + 1):
            assert n not in seen, f"sequence {n} stored twice"
            seen.add(n)
    return seen


def start_ingest(services):
    """The server's event ingest, in this process."""
    from server.events.ingest_loop import Ingest

    ingest = Ingest(services).start()
    assert ingest.subscribed.wait(10), "ingest did not subscribe"
    return ingest
