"""The broker lessoncast configures, tested with a real Mosquitto and real enrolled device credentials.

The device listener refuses foreign filters at SUBSCRIBE (tests/server/test_broker_gate.py); what a device may
subscribe to is still filtered per message, so these tests check what arrives.
"""

import time

import pytest

from playlists import topics
from server.devices import enrolment, registry as devices
from server.messaging import retained
from server.messaging.broker import SERVER_USER, server_password, write_config
from server.messaging.hang_up import hang_up
from server.messaging.mqtt_link import BrokerAddress, ServerLink
from tests.mqtt_client import MqttProbe


def _server_publish(services, pairs, retain=True):
    with ServerLink(BrokerAddress.from_services(services), "test") as link:
        for topic, payload in pairs:
            link.publish(topic, payload, retain=retain)


def _device(services, answer, **kw) -> MqttProbe:
    mqtt = answer["mqtt"]
    return MqttProbe(services.settings.mqtt_port, mqtt["username"], mqtt["password"],
                      client_id=kw.pop("client_id", mqtt["username"]), **kw).connect()


def test_config_is_private_persistent_and_per_listener(services):
    text = write_config(services).read_text()
    assert "allow_anonymous false" in text and "persistence true" in text
    assert "use_username_as_clientid true" in text and "per_listener_settings true" in text
    assert f"listener {services.settings.mqtt_port} 127.0.0.1" in text
    assert f"listener {services.settings.mqtt_server_port} 127.0.0.1" in text
    assert "max_queued_messages 10000" in text
    for name in ("passwd", "acl", "server.passwd", "server.acl"):
        assert (services.data / "broker" / name).stat().st_mode & 0o077 == 0


def test_tls_listener_needs_cert_and_key(tmp_path):
    from tests.conftest import free_port, make_services

    services = make_services(tmp_path / "d", mqtt_port=free_port(), mqtt_tls_port=free_port())
    with pytest.raises(ValueError, match="LESSONCAST_MQTT_TLS_CERT"):
        write_config(services)


@pytest.mark.parametrize("port_name, username, password", [
    ("mqtt_port", None, None),
    ("mqtt_server_port", None, None),
    ("mqtt_server_port", SERVER_USER, "wrong"),
    ("mqtt_port", "r-0000000000", "guess"),
])
def test_anonymous_and_unknown_are_refused(broker, port_name, username, password):
    client = MqttProbe(broker.settings[port_name], username, password).connect()
    assert client.reason is not None and client.reason.is_failure
    client.close()


def test_server_account_only_on_server_listener(broker):
    good = MqttProbe(broker.settings.mqtt_server_port, SERVER_USER, server_password(broker), "srv-a").connect()
    other = MqttProbe(broker.settings.mqtt_server_port, SERVER_USER, server_password(broker), "srv-b").connect()
    assert good.accepted and other.accepted, "two server processes connect side by side with their own ids"
    on_device_port = MqttProbe(broker.settings.mqtt_port, SERVER_USER, server_password(broker)).connect()
    assert not on_device_port.accepted
    for c in (good, other, on_device_port):
        c.close()


def test_device_reads_only_its_own_topics(broker, enrolled):
    a = enrolled("radio", name="甲", language="cmn")
    b = enrolled("radio", name="乙", language="bo")
    assert a["channel"] != b["channel"]
    spy = _device(broker, a)
    for own in (topics.config(a["device"]), topics.cmd(a["device"]), topics.ack(a["device"]),
                topics.notify(a["channel"])):
        spy.subscribe(own)
    # Refused at SUBSCRIBE, or (another channel's notify, which the gate grants every device) dropped on delivery.
    for foreign in ("#", f"lc/v1/devices/{b['device']}/#", topics.config(b["device"]), "lc/v1/channels/+/notify",
                    topics.notify(b["channel"])):
        spy.subscribe(foreign)
    _server_publish(broker, [
        (topics.config(b["device"]), b"secret config"), (topics.ack(b["device"]), b"b ack"),
        (topics.notify(b["channel"]), b"b notify"), (topics.notify(a["channel"]), b"a notify"),
    ])
    _server_publish(broker, [(topics.cmd(b["device"]), b"b cmd"), (topics.cmd(a["device"]), b"a cmd")], retain=False)
    spy.wait_for(topics.notify(a["channel"]))
    spy.wait_for(topics.cmd(a["device"]))
    time.sleep(0.5)  # let anything that should not come arrive
    assert spy.topics() == {topics.config(a["device"]), topics.notify(a["channel"]), topics.cmd(a["device"])}
    assert all(b["device"] not in m.topic and m.payload not in (b"secret config", b"b notify") for m in spy.messages)
    spy.close()


def test_device_cannot_write_for_another_device(broker, enrolled):
    a, b = enrolled("radio", name="甲"), enrolled("terminal", name="乙")
    server = MqttProbe(broker.settings.mqtt_server_port, SERVER_USER, server_password(broker), "srv").connect()
    server.subscribe(topics.all_events())
    server.subscribe(topics.all_status())
    server.subscribe("lc/v1/channels/#")
    rogue = _device(broker, a)
    rogue.publish(topics.events(b["device"]), b"forged play")
    rogue.publish(topics.status(b["device"]), b'{"online": false}', retain=True)
    rogue.publish(topics.notify(b["channel"]), b"forged notify", retain=True)
    rogue.publish(topics.events(a["device"]), b"own play")
    server.wait_for(topics.events(a["device"]))
    time.sleep(0.5)
    # The channels' own retained notify messages (signed at enrolment) arrive; nothing the rogue sent does.
    assert {t for t in server.topics() if "/channels/" not in t} == {topics.events(a["device"])}
    assert not [m for m in server.messages if m.payload.startswith(b"forged")]
    late = MqttProbe(broker.settings.mqtt_server_port, SERVER_USER, server_password(broker), "late").connect()
    late.subscribe(topics.status(b["device"]))
    time.sleep(0.3)
    assert late.messages == [], "nothing forged was retained"
    for c in (server, rogue, late):
        c.close()


def test_revoked_device_is_refused_and_dropped(broker, enrolled):
    a, b = enrolled("radio"), enrolled("radio", name="邻居")
    connected = _device(broker, a)
    bystander = _device(broker, b)
    assert connected.accepted and bystander.accepted
    devices.revoke(broker, a["device"], "test", "lost at sea")
    assert connected.disconnected.wait(10), "the broker drops a revoked device that is connected"
    assert not bystander.disconnected.wait(1), "the reload kept every other device connected"
    bystander.close()
    again = _device(broker, a)
    assert not again.accepted
    config = MqttProbe(broker.settings.mqtt_server_port, SERVER_USER, server_password(broker), "srv").connect()
    config.subscribe(topics.config(a["device"]))
    assert b'"revoked":true' in config.wait_for(topics.config(a["device"])).payload
    for c in (connected, again, config):
        c.close()


def test_credentials_cannot_reach_another_devices_session(broker, enrolled):
    a, b = enrolled("radio", name="甲"), enrolled("radio", name="乙")
    # b keeps a persistent session, goes offline, and a command is queued for it.
    victim = _device(broker, b, clean_start=False, session_expiry=3600)
    victim.subscribe(topics.cmd(b["device"]))
    victim.close()
    _server_publish(broker, [(topics.cmd(b["device"]), b"play now")], retain=False)
    # a connects with b's client id, asking to resume b's session.
    thief = _device(broker, a, client_id=b["device"], clean_start=False, session_expiry=3600)
    assert thief.accepted  # as itself: the broker replaced the client id with a's username
    thief.subscribe(topics.cmd(b["device"]))
    time.sleep(0.5)
    assert thief.messages == []
    # b's session is intact: b gets its queued command when it comes back.
    back = _device(broker, b, clean_start=False, session_expiry=3600)
    assert back.wait_for(topics.cmd(b["device"])).payload == b"play now"
    assert not thief.disconnected.is_set(), "b's return did not take over a's connection either"
    thief.close()
    back.close()


def test_enrolment_publishes_config_at_once(broker, enrolled):
    a = enrolled("terminal", name="村部终端")
    with broker.db.session() as session:
        assert retained.pending(session) == 0, "the broker acknowledged the retained config"
    device = _device(broker, a)
    device.subscribe(topics.config(a["device"]))
    msg = device.wait_for(topics.config(a["device"]))
    assert msg.retain and f'"channel":"{a["channel"]}"'.encode() in msg.payload
    device.close()


def _self_signed(tmp_path):
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "broker.crt", tmp_path / "broker.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_devices_connect_over_the_tls_listener(tmp_path):
    import ssl
    import subprocess

    import paho.mqtt.client as mqtt

    from server.messaging.broker import mosquitto_executable
    from tests.conftest import free_port, make_services
    from tests.e2e.stack import wait_for

    cert, key = _self_signed(tmp_path)
    services = make_services(tmp_path / "d", mqtt_port=free_port(), mqtt_server_port=free_port(),
                             mqtt_tls_port=free_port(), mqtt_tls_cert=str(cert), mqtt_tls_key=str(key))
    with services.db.session() as session:
        code = devices.add(services, session, kind="radio", name="加密", actor="test").code
    answer = enrolment.enrol(services, code)
    assert answer["mqtt"]["tls"] and answer["mqtt"]["port"] == services.settings.mqtt_tls_port
    proc = subprocess.Popen([mosquitto_executable(services), "-c", str(write_config(services))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _listening(services.settings.mqtt_tls_port), 10, "the TLS listener")
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=answer["device"], protocol=mqtt.MQTTv5)
        client.username_pw_set(answer["mqtt"]["username"], answer["mqtt"]["password"])
        client.tls_set(ca_certs=str(cert), cert_reqs=ssl.CERT_REQUIRED)
        result = {}
        client.on_connect = lambda _c, _u, _f, rc, _p: result.setdefault("rc", rc)
        client.on_subscribe = lambda _c, _u, mid, rcs, _p: result.setdefault(mid, rcs)
        client.connect("127.0.0.1", services.settings.mqtt_tls_port)
        client.loop_start()
        wait_for(lambda: "rc" in result, 10, "CONNACK over TLS")
        assert not result["rc"].is_failure
        # The TLS listener has the same subscription gate as the plain one.
        own = client.subscribe(topics.config(answer["device"]), qos=1)[1]
        share = client.subscribe("$share/lessoncast/lc/v1/devices/+/events", qos=1)[1]
        wait_for(lambda: own in result and share in result, 10, "SUBACKs over TLS")
        assert not result[own][0].is_failure and result[share][0].value == 135
        hang_up(client)
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0, "the broker (with the plugin on two listeners) stops cleanly"
        services.db.dispose()


def _listening(port):
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return True
    except OSError:
        return False


def test_the_gate_admin_ends_cleanly_when_paho_clears_its_thread_first(broker, monkeypatch):
    """An enrolment answered 500: paho's loop_stop() checks its network thread, then joins it, and the thread,
    ended by the disconnect, set itself to None in between. Here the thread is made to end exactly there."""
    import paho.mqtt.client as paho_client

    from server.messaging.broker_gate import GateAdmin

    admin = GateAdmin.for_services(broker)
    admin.__enter__()
    thread = admin._client._thread
    real_current = paho_client.threading.current_thread
    test_thread, waited = real_current(), []

    def current_thread_after_the_loop_ended():
        caller = real_current()
        if caller is test_thread and not waited:  # loop_stop's call; other threads see the real function
            waited.append(True)
            thread.join(10)  # the disconnect ends the loop; its finally clears client._thread
            assert admin._client._thread is None
        return caller

    monkeypatch.setattr(paho_client.threading, "current_thread", current_thread_after_the_loop_ended)
    admin.__exit__(None, None, None)  # raised AttributeError ('NoneType' object has no attribute 'join')
    assert not thread.is_alive()
