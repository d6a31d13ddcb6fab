"""The device listener refuses subscriptions outside a device's own topics, at SUBSCRIBE, against the real broker.

A device that joined ingest's shared subscription used to be dealt a share of every device's events, which the read
ACL then dropped: ingest never saw them. The attacker here is a foreign client, Debian's ``mosquitto_sub``, run with
a real enrolled device's credentials, while the real ``lessoncast ingest`` stores a second device's events.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import func, select

from playlists import topics
from server.devices import registry as devices
from server.events.models import DeviceEvent
from tests.e2e.fleet_sim import lessoncast_env, start_ingest
from tests.e2e.stack import stop, wait_for
from tests.mqtt_client import MqttProbe

EVENTS = 30


def _suback(port: int, answer: dict, topic_filter: str, out) -> tuple[subprocess.Popen, str]:
    """Start ``mosquitto_sub -V mqttv5`` as device ANSWER on FILTER, its debug output in file OUT; return the
    process (still running, with a persistent session) and the reason code of its SUBACK."""
    mqtt = answer["mqtt"]
    # stdbuf: mosquitto_sub's stdio would otherwise hold its output back in a buffer while it runs.
    proc = subprocess.Popen(["stdbuf", "-oL", "mosquitto_sub", "-V", "mqttv5", "-d", "-h", "127.0.0.1",
                             "-p", str(port), "-u", mqtt["username"], "-P", mqtt["password"],
                             "-i", mqtt["client_id"], "-c", "-x", "3600", "-q", "1", "-t", topic_filter],
                            stdout=open(out, "w"), stderr=subprocess.STDOUT)

    def code():
        found = re.search(r"Subscribed \(mid: \d+\): (\d+)", out.read_text(errors="replace"))
        return found and found.group(1)

    try:
        return proc, wait_for(code, 10, f"the SUBACK of {topic_filter}", out)
    except AssertionError:
        _end(proc)
        raise


def _end(proc: subprocess.Popen) -> None:
    proc.kill()  # its session stays: it asked for a persistent one
    proc.wait(timeout=10)


def _batch(device: str, seq: int) -> tuple[bytes, Properties]:
    event = {"id": str(uuid.uuid4()), "seq": seq, "type": "play", "phase": "completed", "play_id": str(uuid.uuid4()),
             "programme": "2026-Q4", "lesson": 41, "start_position": 0.0, "end_position": 12.5, "volume": 70,
             "device_time": "2026-10-03T11:22:30Z", "clock_offset": 0.0}
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("device", device), ("seq", f"{seq}-{seq}"), ("epoch", "1")]
    return json.dumps({"device": device, "epoch": 1, "events": [event]}).encode(), props


def _stored(services, device: str) -> int:
    with services.db.session() as session:
        return session.scalar(select(func.count()).select_from(DeviceEvent).where(DeviceEvent.device_uid == device))


def _status_seen(services, device: str) -> bool:
    from server.events.models import DeviceStatus

    with services.db.session() as session:
        return session.get(DeviceStatus, device) is not None


def _ingest_group(services) -> str:
    from server.messaging.broker import share_group

    return share_group(services)


@pytest.mark.parametrize("topic_filter", [
    "$share/lessoncast/lc/v1/devices/+/events",
    "$share/INGEST/lc/v1/devices/+/events",  # ingest's own group, as if its name had leaked
    "$share/anything/lc/v1/devices/+/events",
    "$share/anything/lc/v1/devices/OWN/config",
    "lc/v1/devices/+/events",
    "lc/v1/devices/OTHER/config",
    "lc/v1/devices/OWN/#",
    "lc/v1/channels/+/notify",
    "#",
])
def test_foreign_subscriptions_are_refused_at_subscribe(broker, enrolled, topic_filter, tmp_path):
    attacker, other = enrolled("radio", name="甲"), enrolled("radio", name="乙")
    topic_filter = (topic_filter.replace("OWN", attacker["device"]).replace("OTHER", other["device"])
                    .replace("INGEST", _ingest_group(broker) if "INGEST" in topic_filter else "INGEST"))
    proc, code = _suback(broker.settings.mqtt_port, attacker, topic_filter, tmp_path / "sub.log")
    _end(proc)
    assert code == "135", f"{topic_filter}: SUBACK {code}, expected 135 (not authorised)"


def test_own_topics_are_granted(broker, enrolled, tmp_path):
    a = enrolled("radio", name="甲")
    for topic_filter in (topics.config(a["device"]), topics.cmd(a["device"]), topics.ack(a["device"]),
                         topics.notify(a["channel"])):
        proc, code = _suback(broker.settings.mqtt_port, a, topic_filter, tmp_path / "sub.log")
        _end(proc)
        assert code == "1", f"{topic_filter}: SUBACK {code}"


def test_a_device_cannot_take_another_devices_events_from_ingest(broker, enrolled, tmp_path):
    attacker, victim = enrolled("radio", name="甲"), enrolled("radio", name="乙")
    thieves = [_suback(broker.settings.mqtt_port, attacker, f, tmp_path / f"thief{n}.log") for n, f in enumerate(
        ("$share/lessoncast/lc/v1/devices/+/events", f"$share/{_ingest_group(broker)}/lc/v1/devices/+/events"))]
    log = tmp_path / "ingest.log"
    ingest = start_ingest(lessoncast_env(broker), "lessoncast-ingest-gate", log)
    try:
        sender = MqttProbe(broker.settings.mqtt_port, victim["mqtt"]["username"], victim["mqtt"]["password"],
                           client_id=victim["device"]).connect()
        assert sender.accepted
        sender.subscribe(topics.ack(victim["device"]))
        # The retained status reaches ingest only once its subscription is in place: then nothing sent is missed.
        sender.publish(topics.status(victim["device"]), b'{"online": true}', retain=True)
        wait_for(lambda: _status_seen(broker, victim["device"]), 30, "ingest to subscribe", log)
        for seq in range(1, EVENTS + 1):
            payload, props = _batch(victim["device"], seq)
            info = sender.client.publish(topics.events(victim["device"]), payload, qos=1, properties=props)
            info.wait_for_publish(5)
        try:
            wait_for(lambda: _stored(broker, victim["device"]) == EVENTS, 30, "the victim's events", log)
        except AssertionError:
            raise AssertionError(f"{_stored(broker, victim['device'])} of {EVENTS} events of the victim stored")
        sender.wait_for_payload(topics.ack(victim["device"]),
                                lambda p: json.loads(p) == {"epoch": 1, "seq": EVENTS})
        sender.close()
    finally:
        stop(ingest)
        for proc, _code in thieves:
            _end(proc)
    assert all(code == "135" for _proc, code in thieves)


def _session_present(broker, uid: str) -> bool:
    """Whether the broker holds a session for client id UID: authorise a one-off password and resume it."""
    from server.messaging.broker_gate import GateAdmin

    password = "probe-" + uuid.uuid4().hex
    with GateAdmin.for_services(broker) as admin:
        admin.run([{"command": "createClient", "username": uid}])  # no-op when the device is still known
        admin.run([{"command": "setClientPassword", "username": uid, "password": password}])
    probe = MqttProbe(broker.settings.mqtt_port, uid, password, client_id=uid, clean_start=False,
                      session_expiry=60).connect()
    assert probe.accepted, probe.reason
    present = probe.session_present
    probe.close()
    return present


def test_revocation_expires_the_devices_broker_session(broker, enrolled):
    kept, revoked = enrolled("radio", name="甲"), enrolled("radio", name="乙")
    for answer in (kept, revoked):
        device = MqttProbe(broker.settings.mqtt_port, answer["mqtt"]["username"], answer["mqtt"]["password"],
                           client_id=answer["device"], clean_start=False, session_expiry=3600).connect()
        device.subscribe(topics.cmd(answer["device"]))
        device.close()
    devices.revoke(broker, revoked["device"], "test", "stolen")
    again = MqttProbe(broker.settings.mqtt_port, revoked["mqtt"]["username"], revoked["mqtt"]["password"],
                      client_id=revoked["device"]).connect()
    assert not again.accepted, "the revoked password no longer works"
    again.close()
    assert _session_present(broker, kept["device"]), "the probe sees a session that exists"
    assert not _session_present(broker, revoked["device"]), "the revoked device's session was discarded"
