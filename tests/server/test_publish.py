"""Programmes and publishing: drafts are editable, published ones frozen; a publish tells each device only its own
config and channel, through a real Mosquitto, and the signed manifests verify with tuf.ngclient over HTTP."""

import json
import time

import pytest
import requests

from playlists import topics
from playlists.manifest import parse_manifest
from playlists.trust import TrustError, fetch_manifest, open_updater, verify_media
from server.errors import DomainError
from server.programmes import service as programmes, publish
from tests.mqtt_client import MqttProbe

pytestmark = pytest.mark.databases  # each test that uses the instance runs on SQLite and on PostgreSQL


def _device(services, answer, **kw):
    m = answer["mqtt"]
    return MqttProbe(services.settings.mqtt_port, m["username"], m["password"], m["username"], **kw).connect()


@pytest.fixture
def quarter(org, ready_lesson):
    """Q4: a lesson for 青山镇 only, one for everyone (optional, with a Tibetan variant), daily slots."""
    services = org
    for_qs = ready_lesson("第一课 学习党章", 2.0)
    everyone = ready_lesson("第二课 乡村振兴", 2.5)
    tibetan = ready_lesson("第二课（藏语）", 3.0, language="bo")
    pid = programmes.create(services, {
        "code": "2026-Q4", "title": "2026年第四季度", "valid_from": "2026-10-01", "valid_until": "2026-12-31",
        "slots": [{"time": "19:30", "kind": "broadcast"}, {"time": "07:00", "kind": "class"}],
        "items": [{"lesson": for_qs, "groups": ["township:qs"]},
                  {"lesson": everyone, "mandatory": False, "variants": [tibetan]}],
    }, "test")
    return pid, for_qs, everyone, tibetan


def test_publish_tells_each_device_only_its_own_channel(broker, enrolled, quarter, app):
    pid, for_qs, everyone, tibetan = quarter
    radio = enrolled("radio", name="王大爷的收音机", site="qs-01")
    terminal = enrolled("terminal", name="渔港村终端", site="hw-01", language="bo")
    assert radio["channel"] != terminal["channel"]

    preview = publish.preview(broker, pid)
    assert preview["devices_affected"] == 2 and preview["channels_changed"] == 2
    by_channel = {c["id"]: c for c in preview["channels"]}
    assert [i["lesson"] for i in by_channel[radio["channel"]]["added"]] == [for_qs, everyone]
    assert [i["lesson"] for i in by_channel[terminal["channel"]]["added"]] == [tibetan]
    assert by_channel[radio["channel"]]["download_bytes_per_device"] > 0

    early = _device(broker, radio)  # connected before the publish
    early.subscribe(topics.config(radio["device"]))
    early.subscribe(topics.notify(radio["channel"]))
    early.subscribe(topics.notify(terminal["channel"]))  # refused: not its channel
    result = publish.publish(broker, pid, "test")
    assert result["delivered"] and result["tuf"]["targets"] >= 2
    versions = {c["id"]: c["version"] for c in result["channels"]}
    assert versions[radio["channel"]] == 2, "v1 was the empty manifest signed when the radio enrolled"
    early.wait_for_payload(topics.notify(radio["channel"]), lambda p: json.loads(p)["manifest_version"] == 2)
    late = _device(broker, terminal)  # connects after the publish: retained messages wait for it
    late.subscribe(topics.config(terminal["device"]))
    late.subscribe(topics.notify(terminal["channel"]))
    late.subscribe(topics.notify(radio["channel"]))  # refused: not its channel
    late.wait_for(topics.notify(terminal["channel"]))
    late.wait_for(topics.config(terminal["device"]))
    time.sleep(0.5)
    assert early.topics() == {topics.config(radio["device"]), topics.notify(radio["channel"])}
    assert late.topics() == {topics.config(terminal["device"]), topics.notify(terminal["channel"])}
    early.close()
    late.close()


def test_published_programme_is_frozen_and_superseded_by_a_new_version(broker, enrolled, quarter, ready_lesson):
    pid, for_qs, everyone, _ = quarter
    radio = enrolled("radio", site="qs-02")
    publish.publish(broker, pid, "test")
    with pytest.raises(DomainError) as frozen:
        programmes.update(broker, pid, {"title": "改标题"}, "test")
    assert frozen.value.code == "programme_frozen"
    with pytest.raises(DomainError) as again:
        publish.publish(broker, pid, "test")
    assert again.value.code == "already_published"

    extra = ready_lesson("第三课 廉洁自律", 3.5)
    v2 = programmes.new_version(broker, pid, "test")
    programmes.update(broker, v2, {"items": [{"lesson": for_qs, "groups": ["township:qs"]},
                                              {"lesson": everyone, "mandatory": False},
                                              {"lesson": extra}]}, "test")
    preview = publish.preview(broker, v2)
    ch = next(c for c in preview["channels"] if c["id"] == radio["channel"])
    assert [i["lesson"] for i in ch["added"]] == [extra] and ch["removed"] == []
    publish.publish(broker, v2, "test")
    with broker.db.session() as session:
        assert programmes.get(session, pid).state == "superseded"
        assert programmes.get(session, v2).state == "published"
    probe = _device(broker, radio)
    probe.subscribe(topics.notify(radio["channel"]))
    probe.wait_for_payload(topics.notify(radio["channel"]), lambda p: json.loads(p)["manifest_version"] == 3)
    probe.close()


def test_publish_refuses_lessons_that_are_not_ready(org, enrolled):
    from server.lessons.models import Lesson

    enrolled("radio")
    with org.db.session() as session:
        lesson = Lesson(title="还在转码", state="processing", created_at=org.clock(), updated_at=org.clock())
        session.add(lesson)
        session.flush()
        lesson_id = lesson.id
    pid = programmes.create(org, {"code": "X", "title": "x", "valid_from": "2026-10-01",
                                  "valid_until": "2026-12-31", "items": [{"lesson": lesson_id}]}, "test")
    with pytest.raises(DomainError) as caught:
        publish.publish(org, pid, "test")
    assert caught.value.code == "lessons_not_ready" and "还在转码" in caught.value.message
    with org.db.session() as session:
        assert programmes.get(session, pid).state == "draft", "nothing was published"


@pytest.mark.parametrize("data, code", [
    ({"title": "x", "valid_from": "2026-12-31", "valid_until": "2026-10-01"}, "bad_window"),
    ({"title": "x", "valid_from": "2026-13-01", "valid_until": "2026-12-31"}, "bad_date"),
    ({"title": "x", "valid_from": "2026-10-01", "valid_until": "2026-12-31", "items": [{"lesson": 999}]},
     "unknown_lesson"),
    ({"title": "x", "valid_from": "2026-10-01", "valid_until": "2026-12-31", "slots": ["25:00"]}, "bad_slots"),
    ({"title": "x", "valid_from": "2026-10-01", "valid_until": "2026-12-31",
      "slots": [{"time": "07:00", "kind": "class", "item_position": 3}]}, "bad_slots"),
])
def test_bad_programmes_are_refused(org, data, code):
    with pytest.raises(DomainError) as caught:
        programmes.create(org, {"code": "Q", **data}, "test")
    assert caught.value.code == code


def test_signed_manifest_and_media_verify_over_http(broker, enrolled, quarter, live_server, tmp_path):
    pid, for_qs, _, _ = quarter
    radio = enrolled("radio", site="qs-01")
    publish.publish(broker, pid, "test")
    root = json.dumps(radio["root"]).encode()
    base = live_server
    updater = open_updater(tmp_path / "meta", root, f"{base}/tuf/metadata/", f"{base}/tuf/targets/")
    target = publish.manifest_target(radio["channel"])
    manifest = parse_manifest(fetch_manifest(updater, target, tmp_path / "dl"))
    assert manifest.channel == radio["channel"] and manifest.items[0].lesson == for_qs
    item = manifest.items[0]
    data = requests.get(f"{base}/{item.path}", timeout=10).content
    verify_media(updater, item.path, data)
    with pytest.raises(TrustError):
        verify_media(updater, item.path, data[:-1] + bytes([data[-1] ^ 1]))

    # Tamper with the served manifest file: a fresh device refuses it.
    for path in (broker.data / "tuf" / "targets" / "channels" / radio["channel"]).iterdir():
        path.write_bytes(path.read_bytes().replace(b'"mandatory":true', b'"mandatory":false'))
    fresh = open_updater(tmp_path / "meta2", root, f"{base}/tuf/metadata/", f"{base}/tuf/targets/")
    with pytest.raises(TrustError):
        fetch_manifest(fresh, target, tmp_path / "dl2")


def test_api_publish_flow_and_m3u8(broker, enrolled, quarter, client, auth):
    pid, *_ = quarter
    radio = enrolled("radio", site="qs-01")
    assert client.post(f"/api/v1/programmes/{pid}/publish", headers=auth("viewer")).status_code == 403
    preview = client.get(f"/api/v1/programmes/{pid}/preview", headers=auth("viewer")).get_json()
    assert preview["devices_affected"] == 1
    done = client.post(f"/api/v1/programmes/{pid}/publish", headers=auth("media"))
    assert done.status_code == 200 and done.get_json()["channels_changed"] == 1
    frozen = client.patch(f"/api/v1/programmes/{pid}", json={"title": "新"}, headers=auth("media"))
    assert frozen.status_code == 409 and frozen.get_json()["error"]["code"] == "programme_frozen"
    m3u = client.get(f"/api/v1/channels/{radio['channel']}/playlist.m3u8", headers=auth("viewer"))
    assert m3u.status_code == 200 and m3u.data.decode().startswith("#EXTM3U") and "第一课" in m3u.data.decode()


def test_moving_a_device_rewrites_the_acl_and_it_follows_its_new_channel(broker, enrolled, quarter, client, auth):
    pid, for_qs, everyone, _ = quarter
    radio = enrolled("radio", name="渔民老李", site="qs-01")
    publish.publish(broker, pid, "test")
    old_channel = radio["channel"]
    # Like the agent, a persistent session: the broker disconnects a device whose channel changes, and the probe
    # reconnects to it.
    probe = _device(broker, radio, clean_start=False, session_expiry=3600)
    probe.subscribe(topics.notify(old_channel))
    probe.subscribe(topics.config(radio["device"]))
    probe.wait_for(topics.notify(old_channel))

    moved = client.patch(f"/api/v1/devices/{radio['device']}", headers=auth("admin"),
                         json={"site": "hw-01", "groups": ["sea-branch"]})
    assert moved.status_code == 200, moved.get_json()
    new_channel = moved.get_json()["channel"]
    assert new_channel != old_channel
    acl = (broker.data / "broker" / "acl").read_text()
    assert f"topic read {topics.notify(new_channel)}" in acl and topics.notify(old_channel) not in acl
    # The device learns its new channel from its config, then reads the new channel's notify (now allowed).
    def config_channel():
        return [json.loads(m.payload)["channel"] for m in probe.messages if m.topic == topics.config(radio["device"])]
    deadline = time.monotonic() + 10
    while new_channel not in config_channel() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert new_channel in config_channel()
    probe.close()
    fresh = _device(broker, radio | {"mqtt": radio["mqtt"]})
    fresh.subscribe(topics.notify(new_channel))
    fresh.subscribe(topics.notify(old_channel))  # refused now
    notify = json.loads(fresh.wait_for(topics.notify(new_channel)).payload)
    assert notify["manifest_version"] >= 1
    time.sleep(0.3)
    assert topics.notify(old_channel) not in fresh.topics(), "the old channel is no longer readable"
    fresh.close()


def test_a_device_enrolled_after_the_publish_gets_a_signed_manifest_at_once(broker, enrolled, quarter):
    pid, for_qs, *_ = quarter
    enrolled("radio", site="qs-01")
    publish.publish(broker, pid, "test")
    newcomer = enrolled("terminal", site="qs-02", language="nan")  # an audience no one had
    probe = _device(broker, newcomer)
    probe.subscribe(topics.notify(newcomer["channel"]))
    assert json.loads(probe.wait_for(topics.notify(newcomer["channel"])).payload)["manifest_version"] == 1
    with broker.db.session() as session:
        from server.programmes.models import Channel

        manifest = parse_manifest(session.get(Channel, newcomer["channel"]).manifest)
    assert [i.lesson for i in manifest.items][0] == for_qs
    probe.close()


def test_healthz_warns_before_metadata_expires(services, client):
    from datetime import timedelta

    assert client.get("/healthz").get_json()["warnings"] == []
    later = services.clock() + timedelta(days=340)  # root (365 days) has 25 days left
    services.clock = lambda: later
    warnings = client.get("/healthz").get_json()["warnings"]
    assert any("root" in w for w in warnings)


def test_a_preview_signs_and_writes_nothing_and_shows_what_a_new_version_removes(broker, enrolled, quarter):
    from sqlalchemy import func, select

    from server.audit import AuditEntry
    from server.messaging.models import RetainedMessage
    from server.programmes.models import Channel, Programme

    pid, for_qs, everyone, _tibetan = quarter
    radio = enrolled("radio", name="王大爷的收音机", site="qs-01")
    publish.publish(broker, pid, "test")
    v2 = programmes.new_version(broker, pid, "test")
    programmes.update(broker, v2, {"items": [{"lesson": for_qs, "groups": ["township:qs"]}]}, "test")

    def stored():
        tuf = {p: p.read_bytes() for p in sorted((broker.data / "tuf").rglob("*")) if p.is_file()}
        with broker.db.session() as session:
            return (tuf, session.scalar(select(func.count(AuditEntry.id))),
                    sorted((c.id, c.manifest_version, c.manifest) for c in session.scalars(select(Channel))),
                    sorted((m.topic, m.payload) for m in session.scalars(select(RetainedMessage))),
                    [(p.id, p.state) for p in session.scalars(select(Programme).order_by(Programme.id))])

    before = stored()
    assert before[0] and before[2], "nothing signed or stored to compare against"
    preview = publish.preview(broker, v2)
    assert stored() == before, "a preview signed or wrote something"
    ch = next(c for c in preview["channels"] if c["id"] == radio["channel"])
    assert ch["changed"] and ch["added"] == [] and [i["lesson"] for i in ch["removed"]] == [everyone]
    assert ch["download_bytes_per_device"] == 0 and preview["devices_affected"] == 1
