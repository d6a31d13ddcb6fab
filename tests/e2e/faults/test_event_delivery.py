"""Events under server-side faults, against real processes: a Mosquitto, two ``lessoncast ingest`` processes sharing
the subscription, PostgreSQL, and a simulated fleet (``tests/e2e/fleet_sim.py``) publishing event batches as the
agent does, with duplicates, overlapping batches and reordering, and resending whatever the server's ack does not
cover (after every reconnect, and after some seconds without ack progress).

- The broker is killed (SIGKILL: no chance to save its sessions) and started again while the devices report.
- One ingest process is killed with SIGKILL mid-stream and comes back later with the same client id.

Each ends with the account of every event: the database holds each sent event exactly once, nothing unexpected, and
the rows stored before the fault are unchanged after it. The two scenarios share one stack (one module), each with
devices of its own. Short: 12 devices x 50 events each; full (``make test-faults``): 500 devices x 250 events (the
broker) and 200 x 250 (the ingest).
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from playlists import topics
from server.devices import enrolment, registry as devices
from server.events.models import DeviceEvent, DeviceSequence, QuarantinedBatch
from server.messaging.broker import SERVER_USER, server_password
from server.messaging.models import RetainedMessage
from tests.conftest import free_port, make_services
from tests.e2e.faults.accounting import Account, rows_checksum, scaled
from tests.e2e.fleet_sim import (Fleet, MosquittoProcess, SimDevice, device_events, lessoncast_env, plan_batches,
                                 split_batches, start_ingest)
from tests.e2e.stack import stop, wait_for
from tests.mqtt_client import MqttProbe

BROKER_DEVICES = scaled(12, 500)
INGEST_DEVICES = scaled(12, 200)
EVENTS = scaled(50, 250)
BATCH = scaled(10, 50)
RATE = scaled(60.0, 100.0)  # publishes per second from a whole fleet
# Seconds without ack progress before a device sends its unacked batches again. Full size uses the agent's own 30 s
# (AgentOptions.resend_after_s): 500 devices resending every 6 s would offer ingest 250 duplicate batches a second,
# a storm no fleet of real agents makes, which a busy machine's ingest then spends minutes shedding.
RESEND_AFTER_S = scaled(6.0, 30.0)
SEED = 20261003
# Enrolling 500 devices and sending 125,000 events takes many minutes on a busy two-core machine.
pytestmark = pytest.mark.timeout(scaled(300, 2400))


@contextmanager
def _quiet(name: str):
    """Silence logger NAME (enrolment warns that retained configs wait for a broker that is not started yet)."""
    logger = logging.getLogger(name)
    was, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = was


def _unsent_retained(services) -> int:
    with services.db.session() as session:
        return session.scalar(select(func.count()).select_from(RetainedMessage)
                              .where(RetainedMessage.sent_version < RetainedMessage.version))


@dataclass
class EventStack:
    services: object
    broker: MosquittoProcess
    env: dict
    ingests: dict
    logs: dict
    answers: dict  # scenario -> enrolment answers of its devices

    def restart_ingest(self, cid: str) -> None:
        self.ingests[cid] = start_ingest(self.env, cid, self.logs[cid])

    def log_tails(self) -> str:
        paths = [*self.logs.values(), self.broker.log_path]
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in paths if p.exists())


@pytest.fixture(scope="module")
def stack(tmp_path_factory, module_pg_url):
    tmp = tmp_path_factory.mktemp("events")
    services = make_services(tmp / "data", database_url=module_pg_url, port=free_port(), mqtt_port=free_port(),
                             mqtt_server_port=free_port())
    # Every device is enrolled before the broker starts, which then reads the password file.
    answers = {}
    for scenario, count in (("broker", BROKER_DEVICES), ("ingest", INGEST_DEVICES)):
        with services.db.session() as session:
            codes = [devices.add(services, session, kind="terminal" if n % 10 == 0 else "radio",
                                 name=f"{scenario} {n:03d}", actor="test").code for n in range(count)]
        with _quiet("server.messaging.retained"):
            answers[scenario] = [enrolment.enrol(services, code) for code in codes]
    # Ports are chosen again just before the broker binds them: enrolling 700 devices takes minutes, long enough
    # for another process's outgoing connection to take a port chosen at the start.
    services.db.dispose()
    services = make_services(tmp / "data", database_url=module_pg_url, port=free_port(), mqtt_port=free_port(),
                             mqtt_server_port=free_port())
    broker = MosquittoProcess(services).start()
    env = lessoncast_env(services)
    logs = {cid: tmp / f"{cid}.log" for cid in ("ingest-a", "ingest-b")}
    ingests = {cid: start_ingest(env, cid, log) for cid, log in logs.items()}
    try:
        for cid, log in logs.items():
            wait_for(lambda: "ingest connected" in log.read_text(errors="replace"), 30, f"{cid} to connect", log)
        wait_for(lambda: _unsent_retained(services) == 0, 30, "ingest to publish the retained configs",
                 logs["ingest-a"])
        yield EventStack(services, broker, env, ingests, logs, answers)
    finally:
        for proc in ingests.values():
            stop(proc, signal.SIGTERM)
        broker.stop()
        services.db.dispose()


def _fleet(stack: EventStack, scenario: str, rng: random.Random) -> Fleet:
    start = datetime.now(timezone.utc) - timedelta(seconds=EVENTS + 60)
    sims = []
    for answer in stack.answers[scenario]:
        uid, epoch = answer["device"], answer["config"]["sequence_epoch"]
        evs = device_events(uid, epoch, EVENTS, start, rng)
        sims.append(SimDevice(uid, answer["mqtt"]["password"], stack.services.settings.mqtt_port, epoch, evs,
                              split_batches(uid, epoch, evs, BATCH), plan_batches(uid, epoch, evs, BATCH, rng)))
    return Fleet(sims, resend_after_s=RESEND_AFTER_S, resend_window=3, rounds=3, seed=rng.random())


def _stored(services, uids) -> list:
    with services.db.session() as session:
        return session.execute(select(DeviceEvent.device_uid, DeviceEvent.epoch, DeviceEvent.seq,
                                      DeviceEvent.seq_last, DeviceEvent.event_id, DeviceEvent.body)
                               .where(DeviceEvent.device_uid.in_(uids))).all()


def _account(stack: EventStack, name: str, fleet: Fleet, before: list, **figures) -> Account:
    """Every event of FLEET: sent (their ids), stored (ids in the database, with repeats), and whether the rows
    stored before the fault (BEFORE) are byte for byte the same now."""
    uids = [d.uid for d in fleet.devices]
    rows = _stored(stack.services, uids)
    after = {r.event_id: r for r in rows}
    with stack.services.db.session() as session:
        quarantined = session.scalar(select(func.count()).select_from(QuarantinedBatch)
                                     .where(QuarantinedBatch.device_uid.in_(uids)))
        acked = session.execute(select(DeviceSequence.device_uid, DeviceSequence.acked)
                                .where(DeviceSequence.device_uid.in_(uids))).all()
    sent = [(d.uid, e["seq"], e["id"]) for d in fleet.devices for e in d.events]
    stored = [(r.device_uid, r.seq, r.event_id) for r in rows]
    same_rows = [after[r.event_id] for r in before if r.event_id in after]
    return Account.of(name, sent, stored, intact_before=rows_checksum(before),
                      intact_after=rows_checksum(same_rows) if len(same_rows) == len(before) else "rows missing",
                      figures={"stored_before_fault": len(before), "quarantined": quarantined,
                               "acked_devices": sum(1 for _u, a in acked if a == EVENTS),
                               "resent_batches": fleet.stats.resent, **figures})


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _closed(fleet: Fleet, fds_before: int) -> None:
    """Stop FLEET and check it left no socket open: the next scenario's devices must not inherit its descriptors
    (paho's own loop left two per client until garbage collection, and pushed the next fleet past select()'s 1024)."""
    fleet.stop()
    left = _open_fds() - fds_before
    assert left <= 10, f"{left} file descriptors still open after the fleet of {len(fleet.devices)} stopped"


def _run(stack: EventStack, fleet: Fleet, fault) -> list:
    """Send the fleet's plan; at 30 % of it take a snapshot of what is stored, then call FAULT(fleet)."""
    fleet.connect(timeout=scaled(30, 180))
    fleet.start(rate=RATE)
    fleet.wait_until_progress(0.3, 120)
    before = _stored(stack.services, [d.uid for d in fleet.devices])
    fault(fleet)
    assert fleet.plan_done.wait(300), f"the fleet sent only {fleet.progress:.0%} of its plan"
    fleet.wait_all_acked(scaled(60, 600), lambda _missing: stack.log_tails())
    return before


def test_broker_killed_and_restarted_while_devices_report(stack, fault_account):
    rng = random.Random(SEED)
    fds = _open_fds()
    fleet = _fleet(stack, "broker", rng)

    def kill_broker(fleet):
        stack.broker.stop(signal.SIGKILL)
        fleet.wait_until_progress(0.5, 120)  # the devices keep recording and publishing into paho's queue
        stack.broker.start()

    try:
        before = _run(stack, fleet, kill_broker)
        assert all(d.connects >= 2 for d in fleet.devices), "every device reconnected after the restart"
        # What a device gets when it subscribes again: its final ack, retained at the broker.
        reader = MqttProbe(stack.services.settings.mqtt_server_port, SERVER_USER, server_password(stack.services),
                           "ack-reader").connect()
        try:
            reader.subscribe(f"{topics.PREFIX}/devices/+/ack")
            want = {topics.ack(d.uid) for d in fleet.devices}
            wait_for(lambda: want <= reader.topics(), 20, "the retained ack of every device")
            retained = {m.topic: json.loads(m.payload) for m in list(reader.messages) if m.retain}
        finally:
            reader.close()
        stale = {t: a for t, a in retained.items() if t in want and a != {"epoch": 1, "seq": EVENTS}}
    finally:
        _closed(fleet, fds)
    account = _account(stack, "broker killed and restarted", fleet, before, broker_starts=stack.broker.starts,
                       stale_retained_acks=len(stale))
    fault_account(account)
    assert not stale, dict(list(stale.items())[:5])
    assert account.figures["quarantined"] == 0 and account.figures["acked_devices"] == len(fleet.devices)


def test_ingest_killed_with_sigkill(stack, fault_account):
    rng = random.Random(SEED + 1)
    fds = _open_fds()
    fleet = _fleet(stack, "ingest", rng)

    def kill_ingest(fleet):
        victim = stack.ingests["ingest-b"]
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        fleet.wait_until_progress(0.6, 120)  # its share of the shared subscription queues in its session
        stack.restart_ingest("ingest-b")

    try:
        before = _run(stack, fleet, kill_ingest)
    finally:
        _closed(fleet, fds)
    assert "session resumed" in stack.logs["ingest-b"].read_text(errors="replace"), \
        "the restarted ingest did not resume its persistent session"
    account = _account(stack, "ingest killed with SIGKILL", fleet, before)
    fault_account(account)
    assert account.figures["quarantined"] == 0 and account.figures["acked_devices"] == len(fleet.devices)
