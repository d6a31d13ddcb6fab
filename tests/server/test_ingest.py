"""Event ingest against a real Mosquitto: devices publish with their own credentials, the server stores and acks.

An ack may only say n when every event 1..n is committed, quarantined batches count as stored, and nothing is
stored twice, whatever order or how often batches arrive, over MQTT or from a USB stick.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import func, select

from lessoncast.cli import main
from playlists import topics
from server import settings as settings_mod
from server.devices import enrolment, registry as devices
from server.events.batches import EventFileError, contiguous_end
from server.events.ingest import acks_for_devices, import_events_file, store_batch, store_status
from server.events.ingest_loop import Ingest
from server.events.models import DeviceEvent, DeviceSequence, DeviceStatus, QuarantinedBatch
from server.health.checks import check_ingest
from server.messaging.broker import SERVER_USER, server_password
from server.messaging.hang_up import hang_up
from server.messaging.models import RetainedMessage
from tests.mqtt_client import MqttProbe

T0 = datetime(2026, 10, 3, 12, 0, 0, tzinfo=timezone.utc)


def _until(check, timeout: float = 10, what: str = "the condition"):
    """Poll CHECK until it returns something truthy, or fail after TIMEOUT seconds."""
    from tests.e2e.stack import wait_for

    return wait_for(check, timeout, what)


def _device(services, answer, **kw) -> MqttProbe:
    mqtt = answer["mqtt"]
    probe = MqttProbe(services.settings.mqtt_port, mqtt["username"], mqtt["password"], client_id=mqtt["username"],
                      **kw)
    return probe


def _play(seq: int, **extra) -> dict:
    return {"id": str(uuid.uuid4()), "seq": seq, "type": "play", "phase": "completed", "play_id": str(uuid.uuid4()),
            "programme": "2026-Q4", "lesson": 41, "start_position": 0.0, "end_position": 12.5, "volume": 70,
            "device_time": "2026-10-03T11:22:30Z", "clock_offset": -3.2, **extra}


def _batch(device: str, events: list[dict], epoch: int = 1) -> bytes:
    return json.dumps({"device": device, "epoch": epoch, "events": events}).encode()


def _props(device: str, epoch: int | None, first: int, last: int) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    pairs = [("device", device), ("seq", f"{first}-{last}")]
    if epoch is not None:
        pairs.append(("epoch", str(epoch)))
    props.UserProperty = pairs
    return props


def _publish(probe: MqttProbe, device: str, payload: bytes, props: Properties | None) -> None:
    info = probe.client.publish(topics.events(device), payload, qos=1, properties=props)
    info.wait_for_publish(5)
    assert info.is_published()


def _send(probe: MqttProbe, device: str, events: list[dict], epoch: int = 1) -> None:
    last = max(e.get("seq_last", e["seq"]) for e in events)
    _publish(probe, device, _batch(device, events, epoch), _props(device, epoch, events[0]["seq"], last))


def _acked(probe: MqttProbe, device: str, seq: int, epoch: int = 1):
    return probe.wait_for_payload(topics.ack(device), lambda p: json.loads(p) == {"epoch": epoch, "seq": seq})


def _count(services, model, **where) -> int:
    with services.db.session() as session:
        return session.scalar(select(func.count()).select_from(model).filter_by(**where))


def _sequence(services, device: str, epoch: int = 1):
    with services.db.session() as session:
        row = session.get(DeviceSequence, (device, epoch))
        return None if row is None else row.acked


@pytest.fixture
def ingest(broker):
    """A running Ingest (its own thread) on the broker fixture, with the clock fixed at T0 for arrival times."""
    broker.clock = lambda: T0
    running = Ingest(broker, client_id="lessoncast-ingest-test").start()
    assert running.subscribed.wait(10), "ingest subscribed"
    yield running
    running.stop()


@pytest.fixture
def radio(broker, enrolled):
    """An enrolled radio, connected with its own credentials and subscribed to its ack topic."""
    answer = enrolled("radio", name="王大爷的收音机")
    probe = _device(broker, answer, clean_start=False, session_expiry=3600).connect()
    assert probe.accepted
    probe.subscribe(topics.ack(answer["device"]))
    yield answer["device"], probe
    probe.close()


def test_contiguous_end_walks_only_while_ranges_touch():
    for acked, ranges, expected in [
        (0, [], 0),
        (0, [(1, 5)], 5),
        (0, [(6, 10)], 0),
        (0, [(6, 10), (1, 5)], 10),
        (5, [(7, 9)], 5),
        (5, [(3, 8)], 8),       # a summary that started before the ack still extends it
        (0, [(1, 1), (2, 2), (4, 4)], 2),
        (0, [(1, 20), (13, 13)], 20),
    ]:
        assert contiguous_end(acked, ranges) == expected, (acked, ranges)


def test_batch_is_stored_once_with_arrival_time_and_acked(ingest, radio):
    device, probe = radio
    events = [_play(seq) for seq in range(1, 6)]
    _send(probe, device, events)
    _acked(probe, device, 5)
    late = MqttProbe(ingest.services.settings.mqtt_server_port, SERVER_USER, server_password(ingest.services),
                     "late-reader").connect()
    late.subscribe(topics.ack(device))
    assert late.wait_for(topics.ack(device)).retain, "the ack is retained for a device that connects later"
    late.close()
    with ingest.services.db.session() as session:
        rows = session.scalars(select(DeviceEvent).order_by(DeviceEvent.seq)).all()
        assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
        assert {r.received_at for r in rows} == {T0}
        assert rows[0].body == events[0], "every field the device sent is kept"
        assert rows[0].device_time == datetime(2026, 10, 3, 11, 22, 30, tzinfo=timezone.utc)
        assert (rows[0].device_uid, rows[0].epoch, rows[0].type) == (device, 1, "play")

    _send(probe, device, events)  # sent again: the device did not see the ack in time
    _send(probe, device, [_play(6)])
    _acked(probe, device, 6)
    assert _count(ingest.services, DeviceEvent) == 6


def test_out_of_order_batches_ack_only_what_is_contiguous(ingest, radio):
    device, probe = radio
    _send(probe, device, [_play(seq) for seq in range(6, 11)])
    _acked(probe, device, 0)
    assert _count(ingest.services, DeviceEvent) == 5, "an early batch is stored even though it cannot be acked"
    _send(probe, device, [_play(seq) for seq in range(1, 6)])
    _acked(probe, device, 10)


def test_quarantine_counts_as_stored(ingest, radio):
    device, probe = radio
    services = ingest.services
    _send(probe, device, [_play(seq) for seq in range(1, 11)])
    _acked(probe, device, 10)

    _publish(probe, device, b"\xff\xfe not json at all", _props(device, 1, 11, 12))
    _acked(probe, device, 12)
    with services.db.session() as session:
        bad = session.scalars(select(QuarantinedBatch)).one()
        assert (bad.device_uid, bad.epoch, bad.seq_first, bad.seq_last) == (device, 1, 11, 12)
        assert bad.payload == b"\xff\xfe not json at all" and "JSON" in bad.reason

    summary = _play(13, phase="summary", seq_last=20, listened_seconds=3600.0)
    _send(probe, device, [summary])
    _acked(probe, device, 20)

    forged = _batch("r-0000000000", [_play(21)])
    _publish(probe, device, forged, _props(device, 1, 21, 21))
    _acked(probe, device, 21)
    with services.db.session() as session:
        reasons = session.scalars(select(QuarantinedBatch.reason).order_by(QuarantinedBatch.id)).all()
    assert len(reasons) == 2 and "r-0000000000" in reasons[1]
    assert _count(services, DeviceEvent, device_uid="r-0000000000") == 0

    # Without an epoch nothing can acknowledge the batch: it is dropped, and stored nowhere.
    _publish(probe, device, _batch(device, [_play(22)]), _props(device, None, 22, 22))
    _send(probe, device, [_play(22), _play(23)])
    _acked(probe, device, 23)
    assert _count(services, QuarantinedBatch) == 2
    assert _count(services, DeviceEvent, seq=22) == 1


def test_command_results_are_stored_raw(ingest, radio):
    device, probe = radio
    result = {"id": str(uuid.uuid4()), "seq": 1, "type": "command", "command": "c-7f3a9e21", "result": "ok",
              "device_time": "2026-10-03T11:22:31.250000+00:00"}
    _send(probe, device, [result])
    _acked(probe, device, 1)
    with ingest.services.db.session() as session:
        row = session.scalars(select(DeviceEvent)).one()
    assert row.type == "command" and row.body["command"] == "c-7f3a9e21" and row.body["result"] == "ok"


def test_status_and_last_will_update_device_status(ingest, broker, enrolled):
    answer = enrolled("terminal", name="东村村部终端")
    device = answer["device"]
    probe = _device(broker, answer, clean_start=False, session_expiry=3600)
    probe.client.will_set(topics.status(device), b'{"online":false}', qos=1, retain=True)
    probe.connect()
    status = {"online": True, "battery": None, "storage_free_mb": 5120, "queue": 0, "sync": "idle"}
    probe.publish(topics.status(device), json.dumps(status).encode(), retain=True)

    def row():
        with broker.db.session() as session:
            return session.get(DeviceStatus, device)

    seen = _until(lambda: row(), what="the status")
    assert seen.online and seen.body == status and seen.received_at == T0
    assert (seen.storage_free_mb, seen.outbox_depth, seen.sync_state, seen.battery) == (5120, 0, "idle", None)
    # An unclean end (here: the device asks for its will) makes the broker publish the last will.
    hang_up(probe.client, reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=4))
    gone = _until(lambda: (r := row()) is not None and not r.online and r, what="the last will")
    # The fleet keeps what the device last said; only "online" changes.
    assert gone.body == {**status, "online": False} and gone.storage_free_mb == 5120


def test_events_sent_while_ingest_is_down_arrive_when_it_is_back(broker, radio):
    device, probe = radio
    broker.clock = lambda: T0
    first = Ingest(broker, client_id="lessoncast-ingest-test").start()
    assert first.subscribed.wait(10)
    _send(probe, device, [_play(1)])
    _acked(probe, device, 1)
    first.stop()

    _send(probe, device, [_play(2), _play(3)])  # the broker holds it for ingest's persistent session
    assert _sequence(broker, device) == 1

    again = Ingest(broker, client_id="lessoncast-ingest-test").start()
    try:
        _acked(probe, device, 3)
    finally:
        again.stop()
    assert _count(broker, DeviceEvent) == 3


def test_a_resent_batch_fills_what_was_missed(ingest, radio):
    # The agent sends again whatever stays unacked; a lost batch (a broker over max_queued_messages) is resent.
    device, probe = radio
    lost = [_play(1), _play(2)]
    _send(probe, device, [_play(3)])
    _acked(probe, device, 0)
    _send(probe, device, lost)
    _send(probe, device, lost + [_play(4)])
    _acked(probe, device, 4)
    assert _count(ingest.services, DeviceEvent) == 4


def test_ingest_reports_its_heartbeat(ingest):
    assert _until(lambda: check_ingest(ingest.services)["up"], what="an ingest heartbeat")


# --- storage without the broker ---------------------------------------------------------------------------------


def _plain_props(device: str, epoch: int, first: int, last: int) -> dict[str, str]:
    return {"device": device, "epoch": str(epoch), "seq": f"{first}-{last}"}


def test_events_of_a_revoked_device_are_quarantined(services, enrolled):
    device = enrolled("radio")["device"]
    devices.revoke(services, device, "test", "lost at sea")
    events = [_play(1), _play(2)]
    assert store_batch(services, device, _plain_props(device, 1, 1, 2), _batch(device, events), T0) == (1, 2)
    assert _count(services, DeviceEvent) == 0
    with services.db.session() as session:
        assert "not enrolled" in session.scalars(select(QuarantinedBatch.reason)).one()


def test_epochs_are_acked_apart(services, enrolled):
    device = enrolled("radio")["device"]
    assert store_batch(services, device, _plain_props(device, 1, 1, 3),
                       _batch(device, [_play(1), _play(2), _play(3)]), T0) == (1, 3)
    assert store_batch(services, device, _plain_props(device, 2, 1, 1), _batch(device, [_play(1)], epoch=2),
                       T0) == (2, 1)
    with services.db.session() as session:
        assert acks_for_devices(session, [device, "r-unknown000"]) == {device: {"epoch": 2, "seq": 1}}
        assert session.get(RetainedMessage, topics.ack(device)).payload == b'{"epoch":2,"seq":1}'


def _events_file(path, device: str, events: list[dict], epoch: int = 1):
    lines = [json.dumps({"device": device, "epoch": epoch})] + [json.dumps({**e, "epoch": epoch}) for e in events]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_import_events_file_is_idempotent_and_moves_the_ack(services, enrolled, tmp_path):
    device = enrolled("radio")["device"]
    store_batch(services, device, _plain_props(device, 1, 1, 2), _batch(device, [_play(1), _play(2)]), T0)
    path = _events_file(tmp_path / f"{device}.events.jsonl", device, [_play(s) for s in range(3, 9)])
    first = import_events_file(services, path)
    assert (first.device, first.stored, first.duplicates, first.acked) == (device, 6, 0, 8)
    again = import_events_file(services, path)
    assert (again.stored, again.duplicates, again.acked) == (0, 6, 8)
    assert _count(services, DeviceEvent) == 8
    with services.db.session() as session:
        assert session.get(RetainedMessage, topics.ack(device)).payload == b'{"epoch":1,"seq":8}'


def test_import_refuses_unknown_device_and_bad_lines(services, enrolled, tmp_path):
    stranger = _events_file(tmp_path / "x.events.jsonl", "r-0123456789", [_play(1)])
    with pytest.raises(EventFileError, match="r-0123456789 is not known"):
        import_events_file(services, stranger)
    device = enrolled("radio")["device"]
    bad = _events_file(tmp_path / "y.events.jsonl", device, [_play(1), _play(2)])
    bad.write_text(bad.read_text() + '{"id": "not-a-uuid", "seq": 3, "type": "play"}\n')
    with pytest.raises(EventFileError, match="line 4: event.id"):
        import_events_file(services, bad)
    assert _count(services, DeviceEvent) == 0 and _sequence(services, device) is None


def test_cli_import_events_from_a_stick(services, enrolled, tmp_path):
    device = enrolled("radio")["device"]
    stick = tmp_path / "usb"
    (stick / "lessoncast-events").mkdir(parents=True)
    (stick / "old").mkdir()
    _events_file(stick / "lessoncast-events" / f"{device}.jsonl", device, [_play(1), _play(2)])
    _events_file(stick / "old" / f"{device}.events.jsonl", device, [_play(3)])
    env = {settings_mod.BY_NAME["data_dir"].env: str(services.data),
           settings_mod.BY_NAME["mqtt_server_port"].env: str(services.settings.mqtt_server_port)}
    result = CliRunner().invoke(main, ["import-events", str(stick)], env=env)
    assert result.exit_code == 0, result.output
    assert f"device {device}, stored 2, duplicates 0, acked 2" in result.output
    assert f"device {device}, stored 1, duplicates 0, acked 3" in result.output
    again = CliRunner().invoke(main, ["import-events", str(stick)], env=env)
    assert again.exit_code == 0 and "stored 0, duplicates 2, acked 3" in again.output

    (stick / "broken.events.jsonl").write_text('{"device": "r-0123456789", "epoch": 1}\n')
    refused = CliRunner().invoke(main, ["import-events", str(stick / "broken.events.jsonl")], env=env)
    assert refused.exit_code == 1 and "r-0123456789 is not known" in refused.output


def test_storage_on_postgresql(tmp_path, pg_url):
    from tests.conftest import make_services

    services = make_services(tmp_path / "pg", database_url=pg_url)
    try:
        with services.db.session() as session:
            new = devices.add(services, session, kind="radio", name="pg radio", actor="test")
        device = enrolment.enrol(services, new.code)["device"]
        late = [_play(4), _play(5, seq_last=9)]
        assert store_batch(services, device, _plain_props(device, 1, 4, 9), _batch(device, late), T0) == (1, 0)
        assert store_batch(services, device, _plain_props(device, 1, 4, 9), _batch(device, late), T0) == (1, 0)
        assert store_batch(services, device, _plain_props(device, 1, 1, 3), b"[]", T0) == (1, 9)
        assert store_status(services, device, b'{"online": true, "battery": 50}', T0)
        assert store_status(services, device, b'{"online": false}', T0)
        assert _count(services, DeviceEvent) == 2 and _count(services, QuarantinedBatch) == 1
        with services.db.session() as session:
            assert session.get(DeviceStatus, device).online is False
            assert acks_for_devices(session, [device]) == {device: {"epoch": 1, "seq": 9}}
    finally:
        services.db.dispose()


def test_a_new_ingest_learns_retained_status_but_never_goes_back(broker, enrolled, radio):
    answer = enrolled("terminal", name="西村村部终端")
    device = answer["device"]
    probe = _device(broker, answer).connect()
    probe.publish(topics.status(device), b'{"online": true, "queue": 7}', retain=True)
    probe.close()
    broker.clock = lambda: T0
    # A new session, so the broker sends its retained status; it ends when ingest stops (Mosquitto hands a shared
    # subscription's messages to offline members too, and this test has no second ingest to come back for them).
    first = Ingest(broker, client_id="ingest-a", session_expiry_s=0).start()

    def row():
        with broker.db.session() as session:
            return session.get(DeviceStatus, device)

    try:
        assert _until(lambda: row(), what="the retained status").body == {"online": True, "queue": 7}
    finally:
        first.stop()
    later = T0.replace(hour=13)
    store_status(broker, device, b'{"online": true, "queue": 0}', later)

    second = Ingest(broker, client_id="ingest-b").start()  # the old retained copy arrives again
    try:
        assert second.subscribed.wait(10)
        radio_id, radio_probe = radio
        _send(radio_probe, radio_id, [_play(1)])
        _acked(radio_probe, radio_id, 1)  # one worker, in order: the retained status was handled before this
    finally:
        second.stop()
    assert row().body == {"online": True, "queue": 0} and row().received_at == later



def test_a_stopped_ingest_gets_its_share_when_it_returns(broker, radio):
    # Mosquitto 2.0 deals a shared subscription's messages round-robin to every member, offline persistent
    # sessions included: a stopped ingest's share waits for it (or for the device's resend), it is not lost.
    device, probe = radio
    away = Ingest(broker, client_id="ingest-a").start()
    assert away.subscribed.wait(10)
    away.stop()
    staying = Ingest(broker, client_id="ingest-b").start()
    try:
        assert staying.subscribed.wait(10)
        for seq in range(1, 7):
            _send(probe, device, [_play(seq)])
        _until(lambda: _count(broker, DeviceEvent) == 3, what="ingest-b storing its half")
        assert _sequence(broker, device) < 6
        back = Ingest(broker, client_id="ingest-a").start()
        try:
            _acked(probe, device, 6)
        finally:
            back.stop()
    finally:
        staying.stop()
