"""The attacks TUF must stop, against the repository as lessoncast serves it over HTTP (/tuf/), with tuf.ngclient.

Each test publishes through the real publish flow, then plays the attacker by changing what the server serves.
"""

import json
import shutil
from datetime import timedelta

import pytest

from playlists.trust import TrustError, fetch_manifest, open_updater
from server.programmes import service as programmes, publish


@pytest.fixture
def county(broker, org, enrolled, ready_lesson, live_server):
    """Two devices in different channels, a published programme, and the served repository's base URL."""
    lesson = ready_lesson("第一课", 2.0)
    a = enrolled("radio", site="qs-01")
    b = enrolled("terminal", site="hw-01")
    pid = programmes.create(org, {"code": "Q4", "title": "第四季度", "valid_from": "2026-10-01",
                                  "valid_until": "2026-12-31", "items": [{"lesson": lesson}]}, "test")
    publish.publish(org, pid, "test")
    return org, a, b, live_server


def _device(tmp_path, name, answer, base):
    return open_updater(tmp_path / name, json.dumps(answer["root"]).encode(), f"{base}/tuf/metadata/",
                        f"{base}/tuf/targets/")


def _republish(services):
    pid = programmes.new_version(services, "Q4", "test")
    programmes.update(services, pid, {"title": f"第四季度 v{pid}"}, "test")
    publish.publish(services, pid, "test")


def _served_manifest(services, channel):
    """The file the server serves as the channel's current signed manifest."""
    from server.programmes.trust import repository

    info = repository(services).target_info(publish.manifest_target(channel))
    return services.data / "tuf" / "targets" / "channels" / channel / f"{info.hashes['sha256']}.manifest.json"


def test_valid_refresh(county, tmp_path):
    services, a, _, base = county
    data = fetch_manifest(_device(tmp_path, "a", a, base), publish.manifest_target(a["channel"]), tmp_path / "dl")
    assert json.loads(data)["channel"] == a["channel"]


def test_replayed_older_timestamp_is_rejected(county, tmp_path):
    services, a, _, base = county
    meta = services.data / "tuf" / "metadata"
    old = (meta / "timestamp.json").read_bytes()
    _republish(services)
    target = publish.manifest_target(a["channel"])
    fetch_manifest(_device(tmp_path, "a", a, base), target, tmp_path / "dl")  # the device saw the new timestamp
    (meta / "timestamp.json").write_bytes(old)  # the attacker serves the old one
    with pytest.raises(TrustError, match="BadVersionNumberError"):
        fetch_manifest(_device(tmp_path, "a", a, base), target, tmp_path / "dl")


def test_replayed_older_snapshot_is_rejected(county, tmp_path):
    services, a, _, base = county
    meta = services.data / "tuf" / "metadata"
    versions = sorted(int(p.name.split(".")[0]) for p in meta.glob("*.snapshot.json"))
    _republish(services)
    newest = max(int(p.name.split(".")[0]) for p in meta.glob("*.snapshot.json"))
    target = publish.manifest_target(a["channel"])
    fetch_manifest(_device(tmp_path, "a", a, base), target, tmp_path / "dl")
    shutil.copy(meta / f"{versions[-1]}.snapshot.json", meta / f"{newest}.snapshot.json")
    with pytest.raises(TrustError):
        fetch_manifest(_device(tmp_path, "fresh", a, base), target, tmp_path / "dl2")


def test_expired_metadata_is_rejected(broker, org, enrolled, live_server, tmp_path):
    a = enrolled("radio", site="qs-01")  # signs a manifest for its channel with the clock below
    past = org.clock() - timedelta(days=3)
    org.clock = lambda: past
    publish.publish(org, None, "test")  # everything re-signed three days ago: the timestamp expired two days ago
    with pytest.raises(TrustError, match="ExpiredMetadataError"):
        fetch_manifest(_device(tmp_path, "a", a, live_server), publish.manifest_target(a["channel"]), tmp_path / "dl")


def test_another_channels_manifest_is_rejected(county, tmp_path):
    services, a, b, base = county
    _served_manifest(services, a["channel"]).write_bytes(_served_manifest(services, b["channel"]).read_bytes())
    with pytest.raises(TrustError, match="Mismatch"):
        fetch_manifest(_device(tmp_path, "a", a, base), publish.manifest_target(a["channel"]), tmp_path / "dl")


def test_an_older_manifest_in_place_of_the_current_is_rejected(county, tmp_path):
    services, a, _, base = county
    old = _served_manifest(services, a["channel"]).read_bytes()
    _republish(services)
    current = _served_manifest(services, a["channel"])
    assert current.read_bytes() != old
    current.write_bytes(old)
    with pytest.raises(TrustError, match="Mismatch"):
        fetch_manifest(_device(tmp_path, "a", a, base), publish.manifest_target(a["channel"]), tmp_path / "dl")
