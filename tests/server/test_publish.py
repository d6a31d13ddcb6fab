"""Programmes and publishing: drafts are editable, published ones frozen; a publish tells each device only its own
config and channel, through a real Mosquitto, and the signed manifests verify with tuf.ngclient over HTTP."""

import json
import time

import pytest
import requests

from playlists import topics
from playlists.manifest import parse_manifest
from playlists.trust import TrustError, fetch_manifest, open_updater, verify_media
from server import programmes, publish
from server.errors import ApiError
from tests.mqtt_client import MqttProbe


def _device(services, answer):
    m = answer["mqtt"]
    return MqttProbe(services.settings.mqtt_port, m["username"], m["password"], m["username"]).connect()


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
    early.subscribe("#")
    result = publish.publish(broker, pid, "test")
    assert result["delivered"] and result["tuf"]["targets"] >= 2
    notify = early.wait_for(topics.notify(radio["channel"]))
    assert json.loads(notify.payload)["manifest_version"] == 1
    late = _device(broker, terminal)  # connects after the publish: retained messages wait for it
    late.subscribe("#")
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
    with pytest.raises(ApiError) as frozen:
        programmes.update(broker, pid, {"title": "改标题"}, "test")
    assert frozen.value.code == "programme_frozen"
    with pytest.raises(ApiError) as again:
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
    assert json.loads(probe.wait_for(topics.notify(radio["channel"])).payload)["manifest_version"] == 2
    probe.close()


def test_publish_refuses_lessons_that_are_not_ready(org, enrolled):
    from server import lessons
    from server.models import Lesson

    enrolled("radio")
    with org.db.session() as session:
        lesson = Lesson(title="还在转码", state="processing", created_at=org.clock(), updated_at=org.clock())
        session.add(lesson)
        session.flush()
        lesson_id = lesson.id
    pid = programmes.create(org, {"code": "X", "title": "x", "valid_from": "2026-10-01",
                                  "valid_until": "2026-12-31", "items": [{"lesson": lesson_id}]}, "test")
    with pytest.raises(ApiError) as caught:
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
    with pytest.raises(ApiError) as caught:
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
