"""The broker lessoncast configures: a real Mosquitto on a free port accepts the server's account and no one else."""

import subprocess
import threading

import paho.mqtt.client as mqtt
import pytest

from server.broker import SERVER_USER, mosquitto_executable, server_password, write_config
from tests.e2e.stack import wait_for


@pytest.fixture
def broker(services):
    conf = write_config(services)
    proc = subprocess.Popen([mosquitto_executable(services), "-c", str(conf)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    yield services
    proc.terminate()
    proc.wait(timeout=10)


def _connect(port: int, username: str | None, password: str | None):
    """Connect with MQTT 5 and return the reason code the broker answered with."""
    done = threading.Event()
    result = {}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=username or "", protocol=mqtt.MQTTv5)
    if username:
        client.username_pw_set(username, password)

    def on_connect(_client, _userdata, _flags, reason_code, _properties):
        result["rc"] = reason_code
        done.set()

    client.on_connect = on_connect
    wait_for(lambda: _try_connect(client, port), 10, "the broker to listen")
    client.loop_start()
    done.wait(10)
    client.disconnect()
    client.loop_stop()
    return result.get("rc")


def _try_connect(client, port):
    try:
        client.connect("127.0.0.1", port)
        return True
    except OSError:
        return False


def test_server_account_connects(broker):
    rc = _connect(broker.settings.mqtt_port, SERVER_USER, server_password(broker))
    assert rc is not None and not rc.is_failure


@pytest.mark.parametrize("username, password", [(None, None), (SERVER_USER, "wrong"), ("device-1", "x")])
def test_others_are_refused(broker, username, password):
    rc = _connect(broker.settings.mqtt_port, username, password)
    assert rc is not None and rc.is_failure


def test_config_is_private_and_persistent(services):
    conf = write_config(services)
    text = conf.read_text()
    assert "allow_anonymous false" in text and "persistence true" in text
    assert "use_username_as_clientid true" in text
    assert f"listener {services.settings.mqtt_port} 127.0.0.1" in text
    assert (conf.parent / "passwd").stat().st_mode & 0o077 == 0
