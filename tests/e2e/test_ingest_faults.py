"""Ingest under faults, end to end: a real Mosquitto, two ``lessoncast ingest`` processes sharing the subscription,
and 200 simulated devices (each with its own broker credentials) sending 50,000 play events.

The devices send with duplicates (about a tenth of the batches twice, plus batches straddling two others) and out of
order (each device's batches shuffled, so later sequences arrive before earlier ones). Mid-stream one ingest process
is killed with SIGKILL, then the broker is restarted (stopped and started again on the same ports, config and
persistence directory) while that ingest is still away, and later the ingest comes back with the same client id
and resumes its session (Mosquitto 2.0 kept dealing it its share of the shared subscription while it was away). As a
real device does, each simulated device subscribes on every connect and sends again the unacked batches it sent,
after every reconnect and after some seconds without ack progress (``tests/e2e/fleet_sim.py``).

None of it may show in the result: the database holds exactly the 50,000 unique events with their (device, seq),
every device's ack reaches 250 (in the database, at the device, and in the broker's retained copy), and each
device's counters say 250 events stored, every other copy a duplicate.

The database is PostgreSQL: two ingest processes write at the same time, and ingest locks the device's sequence row
(``SELECT ... FOR UPDATE``) so a device's ack advances one transaction at a time while different devices are stored
in parallel. SQLite (WAL, busy_timeout) would be correct too, but it serialises the two processes on its single
write lock, so the test would mostly measure lock waits; PostgreSQL is the database for several ingest processes.

Batches hold 50 events (the agent's own batches are up to 200), so the 50,000 events are about 1,200 publishes
including duplicates, which two ingest processes store in well under a minute on two cores.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from playlists import topics
from server.devices import enrolment, registry as devices
from server.events.models import DeviceEvent, DeviceSequence, QuarantinedBatch
from server.messaging.broker import SERVER_USER, server_password
from server.messaging.models import RetainedMessage
from tests.conftest import free_port, make_services
from tests.e2e.fleet_sim import (Fleet, MosquittoProcess, SimDevice, device_events, lessoncast_env,
                                 plan_batches, split_batches, start_ingest)
from tests.e2e.stack import stop, wait_for
from tests.mqtt_client import MqttProbe

DEVICES = 200
TERMINALS = 20
EVENTS_PER_DEVICE = 250
BATCH = 50
RATE = 80.0  # publishes per second from the whole fleet: the plan takes about 15 s
SEED = 20261003
FINAL_ACK = {"epoch": 1, "seq": EVENTS_PER_DEVICE}


@contextmanager
def _quiet(name: str):
    """Silence logger NAME (enrolment warns that retained configs wait for a broker that is not started yet)."""
    logger = logging.getLogger(name)
    was, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = was


def _enrol_fleet(services, count: int) -> list[dict]:
    """Add and enrol COUNT devices in-process (TERMINALS terminals, the rest radios); their enrolment answers."""
    with services.db.session() as session:
        codes = [devices.add(services, session, kind="terminal" if n < TERMINALS else "radio",
                             name=f"fleet {n:03d}", actor="test").code for n in range(count)]
    with _quiet("server.messaging.retained"):
        return [enrolment.enrol(services, code) for code in codes]


def _log_tails(paths) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in paths if p.exists())


def _unsent_retained(services) -> int:
    with services.db.session() as session:
        return session.scalar(select(func.count()).select_from(RetainedMessage)
                              .where(RetainedMessage.sent_version < RetainedMessage.version))


def test_two_ingests_lose_and_duplicate_nothing_through_kill_and_broker_restart(tmp_path, pg_url):
    rng = random.Random(SEED)
    services = make_services(tmp_path / "data", database_url=pg_url, port=free_port(), mqtt_port=free_port(),
                             mqtt_server_port=free_port())
    answers = _enrol_fleet(services, DEVICES)  # before the broker starts, which then reads the password file
    broker = MosquittoProcess(services).start()
    env = lessoncast_env(services)
    logs = {cid: tmp_path / f"{cid}.log" for cid in ("ingest-a", "ingest-b")}
    ingests = {cid: start_ingest(env, cid, log) for cid, log in logs.items()}
    fleet = None
    try:
        for cid, log in logs.items():
            wait_for(lambda: "ingest connected" in log.read_text(errors="replace"), 20, f"{cid} to connect", log)
        # An ingest flushes the retained messages (the devices' configs) once it is connected and subscribed.
        wait_for(lambda: _unsent_retained(services) == 0, 20, "ingest to publish the retained configs",
                 logs["ingest-a"])

        start = datetime.now(timezone.utc) - timedelta(seconds=EVENTS_PER_DEVICE + 60)
        sims = []
        for answer in answers:
            uid, epoch = answer["device"], answer["config"]["sequence_epoch"]
            assert epoch == 1, "a fresh enrolment starts at sequence epoch 1"
            evs = device_events(uid, epoch, EVENTS_PER_DEVICE, start, rng)
            sims.append(SimDevice(uid, answer["mqtt"]["password"], services.settings.mqtt_port, epoch, evs,
                                  split_batches(uid, epoch, evs, BATCH), plan_batches(uid, epoch, evs, BATCH, rng)))
        fleet = Fleet(sims, resend_after_s=8.0, resend_window=3, rounds=3, seed=SEED)
        fleet.connect()
        planned_events = sum(len(json.loads(b.payload)["events"]) for d in sims for b in d.plan)
        began = time.monotonic()
        fleet.start(rate=RATE)

        # Mid-stream: SIGKILL one ingest (what it held unacked stays in its session; its share keeps queuing there),
        fleet.wait_until_progress(0.3, 60)
        victim = ingests["ingest-b"]
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        # ... restart the broker while that ingest is away (its session and queue must outlive the restart),
        fleet.wait_until_progress(0.5, 60)
        broker.restart()
        # ... and bring it back with the same client id, so it resumes its session and stores its share.
        fleet.wait_until_progress(0.7, 60)
        ingests["ingest-b"] = start_ingest(env, "ingest-b", logs["ingest-b"])
        assert fleet.plan_done.wait(60), f"the fleet sent only {fleet.progress:.0%} of its plan in 60 s"
        sent_s = time.monotonic() - began

        def describe(missing) -> str:
            with services.db.session() as session:
                rows = dict(session.execute(select(DeviceSequence.device_uid, DeviceSequence.acked)
                                            .where(DeviceSequence.device_uid.in_([d.uid for d in missing]))).all())
            return (f"database acks of those: {', '.join(f'{d.uid}={rows.get(d.uid)}' for d in missing[:20])}; "
                    f"retained messages not yet sent to the broker: {_unsent_retained(services)}\n"
                    + _log_tails([*logs.values(), broker.log_path]))

        fleet.wait_all_acked(60, describe)
        acked_s = time.monotonic() - began
        print(f"\n{fleet.stats.planned} publishes sent in {sent_s:.1f} s; every device acked after {acked_s:.1f} s; "
              f"{fleet.stats.resent} batches resent by devices; {sum(d.ack_regressions for d in sims)} older acks "
              "arrived after newer ones")
        assert "session resumed" in logs["ingest-b"].read_text(errors="replace"), \
            "the restarted ingest did not resume its persistent session"
        assert broker.starts == 2 and all(d.connects >= 2 for d in sims), "every device reconnected after the restart"

        # The broker's retained ack (what a device gets when it subscribes) is the final one of every device.
        reader = MqttProbe(services.settings.mqtt_server_port, SERVER_USER, server_password(services),
                           "ack-reader").connect()
        try:
            reader.subscribe(f"{topics.PREFIX}/devices/+/ack")
            want = {topics.ack(d.uid) for d in sims}
            wait_for(lambda: want <= reader.topics(), 10, "the retained ack of every device")
            retained = {m.topic: json.loads(m.payload) for m in list(reader.messages) if m.retain}
        finally:
            reader.close()
        stale = {t: a for t, a in retained.items() if a != FINAL_ACK}
        assert not stale, (f"{len(stale)} retained acks at the broker are not the final one although the database "
                           f"has it (two ingests flushing at once can publish an older version after a newer one): "
                           f"{dict(list(stale.items())[:10])}")
    finally:
        if fleet is not None:
            fleet.stop()
        for proc in ingests.values():
            stop(proc, signal.SIGTERM)
        broker.stop()

    expected = {(d.uid, e["seq"], e["id"]) for d in sims for e in d.events}
    assert len(expected) == DEVICES * EVENTS_PER_DEVICE
    with services.db.session() as session:
        stored = session.execute(select(DeviceEvent.device_uid, DeviceEvent.seq, DeviceEvent.event_id,
                                        DeviceEvent.epoch, DeviceEvent.seq_last)).all()
        sequences = session.execute(select(DeviceSequence.device_uid, DeviceSequence.epoch, DeviceSequence.acked,
                                           DeviceSequence.events, DeviceSequence.duplicates,
                                           DeviceSequence.quarantined, DeviceSequence.rejected)).all()
        quarantined = session.scalar(select(func.count()).select_from(QuarantinedBatch))
    services.db.dispose()

    assert len(stored) == DEVICES * EVENTS_PER_DEVICE, f"{len(stored)} events stored"
    assert len({r.event_id for r in stored}) == len(stored), "an event id is stored twice"
    assert {(r.device_uid, r.seq, r.event_id) for r in stored} == expected, "the stored events are not the sent ones"
    assert {(r.epoch, r.seq == r.seq_last) for r in stored} == {(1, True)}
    assert quarantined == 0

    assert len(sequences) == DEVICES and {s.epoch for s in sequences} == {1}
    wrong = [s for s in sequences
             if (s.acked, s.events, s.quarantined, s.rejected) != (EVENTS_PER_DEVICE, EVENTS_PER_DEVICE, 0, 0)]
    assert not wrong, f"device counters off: {wrong[:10]}"
    # Every planned publish reached an ingest at least once, and every copy of an event after its first is a
    # duplicate; resends and redeliveries after the kill and the restart only add to that.
    duplicates = sum(s.duplicates for s in sequences)
    assert duplicates >= planned_events - len(expected), (duplicates, planned_events)
    assert all(d.acked == EVENTS_PER_DEVICE for d in sims)
