"""Every event reaches the server exactly once: through normal delivery, a broker that drops what it queued, and a
broker restart in the middle of the stream."""

import socket
import subprocess
import threading
import time

import pytest

from server.messaging.broker import mosquitto_executable, write_config
from server.programmes import service as programmes, publish
from tests.e2e.agent_harness import (add_and_enrol, covered_exactly_once, fast_options, poll, server_events,
                                     start_agent, start_ingest)

pytestmark = pytest.mark.long_running(55)  # seconds of a worker; see tests/conftest.py


def _listening(services, proc) -> None:
    """Wait until the Mosquitto just started accepts connections on the server's port (a loaded machine may take
    seconds; an idle one milliseconds)."""
    def accepts():
        assert proc.poll() is None, "mosquitto exited at start"
        try:
            socket.create_connection(("127.0.0.1", services.settings.mqtt_server_port), timeout=1).close()
            return True
        except OSError:
            return False
    poll(accepts, 30, "mosquitto to listen")


def _programme(services, lessons):
    pid = programmes.create(services, {"code": "Q4", "title": "第四季度", "valid_from": "2026-10-01",
                                       "valid_until": "2026-12-31", "items": [{"lesson": l} for l in lessons],
                                       "slots": []}, "test")
    publish.publish(services, pid, "test")


def _all_delivered(services, running):
    agent = running.agent
    device = agent.device

    def done():
        return agent.outbox.depth() == 0 and server_events(services, device)
    poll(done, 60, "every event to be acked")
    rows = server_events(services, device)
    covered = covered_exactly_once(rows)
    last = max(covered)
    assert covered == set(range(1, last + 1)), "no gap"
    return rows


def test_plays_reach_the_server(broker, org, ready_lesson, live_server, tmp_path):
    services = org
    lesson = ready_lesson("第一课", 2.0)
    store = add_and_enrol(services, live_server, tmp_path / "radio")
    _programme(services, [lesson])
    ingest = start_ingest(services)
    running = start_agent(store, speed=4.0)
    try:
        poll(lambda: running.agent.manifest, 30, "the programme")
        running.hw.keys.press("play_pause")
        rows = poll(lambda: [r for r in server_events(services, running.agent.device) if r[3] == "completed"] and
                    server_events(services, running.agent.device), 30, "the completed play at the server")
        phases = [r[3] for r in rows]
        assert "started" in phases and "completed" in phases
        _all_delivered(services, running)
    finally:
        running.halt()
        ingest.stop()


def _checkins(running, count, pause=0.0):
    for n in range(count):
        running.hw.checkin.present("card", f"CARD-{n:05d}")
        running.agent.wake.set()
        if pause:
            time.sleep(pause)


def test_events_dropped_by_the_broker_are_sent_again(services, tmp_path, live_server, app):
    # A broker that queues only 5 messages for an offline subscriber, like a Mosquitto that hit its limit.
    conf = write_config(services)
    conf.write_text(conf.read_text().replace("max_queued_messages 10000", "max_queued_messages 5"))
    proc = subprocess.Popen([mosquitto_executable(services), "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _listening(services, proc)
        ingest = start_ingest(services)
        ingest.stop()  # its persistent session stays; the broker queues for it, up to 5 messages
        store = add_and_enrol(services, live_server, tmp_path / "terminal", kind="terminal", site=None)
        running = start_agent(store, options=fast_options(batch_size=10, resend_after_s=1.0))
        try:
            poll(lambda: running.agent.link.connected.is_set(), 20, "the agent to connect")
            _checkins(running, 300)
            poll(lambda: running.agent.outbox.depth() >= 300, 30, "300 check-ins in the outbox")
            time.sleep(3.0)  # sent, and sent again after each resend timeout, into a queue that keeps only 5
            assert running.agent.outbox.depth() >= 300, "nothing was acked while ingest was down"
            ingest = start_ingest(services)
            rows = _all_delivered(services, running)
            assert sum(1 for r in rows if r[3] == "checkin") == 300
        finally:
            running.halt()
            ingest.stop()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_broker_restart_mid_stream_loses_nothing(services, tmp_path, live_server, app):
    conf = write_config(services)

    def start_broker():
        return subprocess.Popen([mosquitto_executable(services), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    proc = start_broker()
    _listening(services, proc)
    ingest = start_ingest(services)
    store = add_and_enrol(services, live_server, tmp_path / "terminal", kind="terminal", site=None)
    running = start_agent(store)
    try:
        poll(lambda: running.agent.link.connected.is_set(), 20, "the agent to connect")
        producer = threading.Thread(target=_checkins, args=(running, 400, 0.005))
        producer.start()
        time.sleep(0.6)
        proc.terminate()
        proc.wait(timeout=10)
        time.sleep(1.0)
        proc = start_broker()
        producer.join()
        rows = _all_delivered(services, running)
        assert sum(1 for r in rows if r[3] == "checkin") == 400
    finally:
        running.halt()
        ingest.stop()
        proc.terminate()
        proc.wait(timeout=10)
