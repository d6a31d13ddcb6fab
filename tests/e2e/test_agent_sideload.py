"""A radio that never connects: a sideload pack brings it the published programme, its plays travel back on the
same USB stick, and the next pack's signed acks empty its outbox."""

import json
import os
from pathlib import Path

from click.testing import CliRunner

from device_agent.outbox import Outbox
from device_agent.sideload import import_pack
from lessoncast.cli import main
from playlists.manifest import parse_manifest
from server.programmes import service as programmes, publish
from tests.conftest import free_port
from tests.e2e.agent_harness import add_and_enrol, covered_exactly_once, poll, server_events, start_agent


def _pack(services, channel, out):
    env = {"LESSONCAST_DATA_DIR": str(services.data), "LESSONCAST_PORT": str(services.settings.port),
           "LESSONCAST_MQTT_PORT": str(services.settings.mqtt_port),
           "LESSONCAST_MQTT_SERVER_PORT": str(services.settings.mqtt_server_port)}
    result = CliRunner().invoke(main, ["pack", "--channel", channel, str(out)], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out / "lessoncast-pack"


def test_a_never_connected_radio_lives_on_sideload_packs(org, ready_lesson, live_server, tmp_path):
    services = org
    lesson = ready_lesson("第一课", 3.0)
    store = add_and_enrol(services, live_server, tmp_path / "radio", site="hw-01")
    device = store.credentials()["device"]
    pid = programmes.create(services, {"code": "Q4", "title": "第四季度", "valid_from": "2026-10-01",
                                       "valid_until": "2026-12-31", "items": [{"lesson": lesson}]}, "test")
    publish.publish(services, pid, "test")
    # From here on the radio reaches nothing: no broker, no server.
    creds = store.credentials()
    dead = free_port()
    creds["mqtt"]["port"] = dead
    for key in ("metadata_url", "targets_url", "media_base_url"):
        creds[key] = f"http://127.0.0.1:{dead}/"
    store.write_json("credentials.json", creds, private=True)
    channel = store.read_json("config.json")["channel"]

    stick = tmp_path / "usb1"
    result = import_pack(store, _pack(services, channel, stick))
    assert result["manifest_version"] == parse_manifest(store.current_manifest()).version
    assert result["events_exported"] == 0

    running = start_agent(store, speed=4.0)
    try:
        running.hw.keys.press("play_pause")
        poll(lambda: running.agent.player.playing is None and running.agent.outbox.depth() >= 2, 30, "a play")
    finally:
        running.halt()

    # The member's son takes the stick to the township; it now holds the radio's events.
    stick2 = tmp_path / "usb2"
    result = import_pack(store, _pack(services, channel, stick2))
    events_file = stick2 / "lessoncast-events" / f"{device}.events.jsonl"
    assert result["events_exported"] >= 2 and events_file.is_file()
    env = {"LESSONCAST_DATA_DIR": str(services.data)}
    imported = CliRunner().invoke(main, ["import-events", str(stick2)], env=env, catch_exceptions=False)
    assert imported.exit_code == 0, imported.output
    again = CliRunner().invoke(main, ["import-events", str(stick2)], env=env, catch_exceptions=False)
    assert again.exit_code == 0
    rows = server_events(services, device)
    covered = covered_exactly_once(rows)
    assert covered == set(range(1, max(covered) + 1)) and any(r[3] == "completed" for r in rows)

    # The next pack carries the county's signed acks: the radio's outbox empties.
    result = import_pack(store, _pack(services, channel, tmp_path / "usb3"))
    assert result["events_acked"] == len(covered)
    outbox = Outbox(store.outbox_path)
    assert outbox.depth() == 0
    outbox.close()


def test_a_pack_with_forged_acks_is_refused(org, ready_lesson, live_server, tmp_path):
    from playlists.trust import TrustError

    services = org
    lesson = ready_lesson("第一课", 3.0)
    store = add_and_enrol(services, live_server, tmp_path / "radio", site="hw-01")
    pid = programmes.create(services, {"code": "Q4", "title": "第四季度", "valid_from": "2026-10-01",
                                       "valid_until": "2026-12-31", "items": [{"lesson": lesson}]}, "test")
    publish.publish(services, pid, "test")
    channel = store.read_json("config.json")["channel"]
    pack = _pack(services, channel, tmp_path / "usb")
    acks = pack / "targets" / "acks.json"
    forged = json.loads(acks.read_bytes())
    forged["acks"][store.credentials()["device"]] = {"epoch": 1, "seq": 10_000}
    acks.write_bytes(json.dumps(forged).encode())
    try:
        import_pack(store, pack)
    except Exception as exc:  # refused with the reason
        assert isinstance(exc, TrustError) and "acks" in str(exc)
    else:
        raise AssertionError("a pack with forged acks was accepted")


def _fake_pip(argv, **kwargs):
    """Stands in for `python -m venv` and pip: makes the environment directory (installing is pip's job)."""
    if "venv" in argv:
        (Path(argv[-1]) / "bin").mkdir(parents=True)


def test_an_offline_radio_installs_its_assigned_agent_release_from_a_pack(org, ready_lesson, live_server, tmp_path):
    from device_agent.update import InstallDir, SelfUpdate
    from playlists.trust import TrustError
    from server.agent_releases import releases, rollouts
    from tests.server.test_agent_rollouts import fake_wheel

    services = org
    lesson = ready_lesson("第一课", 3.0)
    store = add_and_enrol(services, live_server, tmp_path / "radio", site="hw-01")
    pid = programmes.create(services, {"code": "Q4", "title": "第四季度", "valid_from": "2026-10-01",
                                       "valid_until": "2026-12-31", "items": [{"lesson": lesson}]}, "test")
    publish.publish(services, pid, "test")
    deps = tmp_path / "deps"
    deps.mkdir()
    # A dependency whose wheel name is longer than FAT32's 64 characters: the pack names it by its hash.
    long_dep = fake_wheel(deps, "a_dependency_with_a_rather_long_distribution_name", "12.0.0")
    assert len(long_dep.name) > 64
    releases.add(services, fake_wheel(tmp_path, "lessoncast", "9.1.0"), deps, "test")
    rollouts.create(services, {"release": "9.1.0", "stages": [{"kind": "county"}]}, "test")
    # From here on the radio reaches nothing: no broker, no server.
    creds = store.credentials()
    dead = free_port()
    creds["mqtt"]["port"] = dead
    for key in ("metadata_url", "targets_url", "media_base_url"):
        creds[key] = f"http://127.0.0.1:{dead}/"
    store.write_json("credentials.json", creds, private=True)
    channel = store.read_json("config.json")["channel"]
    install = InstallDir(tmp_path / "install")
    (install.root / "releases" / "0.4.0" / "bin").mkdir(parents=True)
    install.switch(install.release("0.4.0"))
    updates = SelfUpdate(store, install, "0.4.0", run=_fake_pip)

    # A stick whose agent wheel was changed (same length, other bytes) is refused whole, like a changed lesson.
    tampered = _pack(services, channel, tmp_path / "usb1")
    index = json.loads((tampered / "pack.json").read_bytes())
    wheel = next(f for f in index["files"] if f["target"].endswith("lessoncast-9.1.0-py3-none-any.whl"))
    assert wheel["path"].startswith("agent/") and len(wheel["path"].split("/")[1]) <= 64
    data = bytearray((tampered / wheel["path"]).read_bytes())
    data[30] ^= 0xFF
    (tampered / wheel["path"]).write_bytes(bytes(data))
    try:
        import_pack(store, tampered, updates=updates)
    except TrustError as exc:
        assert "lessoncast-9.1.0" in str(exc)
    else:
        raise AssertionError("a pack with a tampered agent wheel was accepted")
    assert os.readlink(install.current) == "releases/0.4.0"
    assert not install.wheelhouse.exists()

    # A good stick: the radio installs the release beside the running one and switches at its next start.
    result = import_pack(store, _pack(services, channel, tmp_path / "usb2"), updates=updates)
    assert result["agent_update"] == {"result": "switched", "version": "9.1.0", "reason": ""}
    assert os.readlink(install.current) == "releases/9.1.0"
    assert sorted(p.name for p in install.wheelhouse.iterdir()) == sorted([long_dep.name,
                                                                           "lessoncast-9.1.0-py3-none-any.whl"])
    assert updates.state()["state"] == "trial"
    # Without an install directory (an agent not installed by the launcher), the pack loads the programme only.
    again = import_pack(store, _pack(services, channel, tmp_path / "usb3"))
    assert again["agent_update"] is None
