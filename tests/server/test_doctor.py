"""`lessoncast doctor`: a healthy instance passes; open permissions, a broker that lets a device join ingest's shared
subscription, and a missing ffmpeg each fail with a plain message and a non-zero exit."""

from __future__ import annotations

import json
import os

from click.testing import CliRunner

from lessoncast.cli import main
from server.run_lock import RunLock


def _env(services) -> dict[str, str]:
    s = services.settings
    return {"LESSONCAST_DATA_DIR": str(services.data), "LESSONCAST_PORT": str(s.port),
            "LESSONCAST_WEB_BACKEND_PORT": str(s.port + 1 if not s.web_backend_port else s.web_backend_port),
            "LESSONCAST_MQTT_PORT": str(s.mqtt_port), "LESSONCAST_MQTT_SERVER_PORT": str(s.mqtt_server_port)}


def _doctor(services, **env):
    result = CliRunner().invoke(main, ["doctor", "--json", "--lang", "en"], env={**_env(services), **env})
    report = json.loads(result.stdout)
    return result.exit_code, report, {c["check"]: c for c in report["checks"]}, result


def _fails(report) -> list[str]:
    return [c["message"] for c in report["checks"] if c["status"] == "fail"]


def test_a_healthy_instance_passes_and_its_broker_refuses_what_devices_may_not_do(broker):
    lock = RunLock(broker.data).acquire()  # the broker this test started counts as this instance's run
    try:
        code, report, checks, result = _doctor(broker)
    finally:
        lock.release()
    assert code == 0 and report["ok"], result.output
    assert not _fails(report)
    assert checks["broker-auth"]["status"] == "ok" and "refuses clients without a password" in \
        checks["broker-auth"]["message"]
    assert checks["broker-acl"]["status"] == "ok", checks["broker-acl"]
    for name in ("database", "media", "ffmpeg", "permissions", "keys"):
        assert checks[name]["status"] == "ok", checks[name]
    assert "newest migration" in checks["database"]["message"]
    zh = CliRunner().invoke(main, ["doctor", "--lang", "zh_CN"], env=_env(broker))
    assert "数据库" in zh.output, "plain words in the county's language too"


def test_open_permissions_fail_with_the_command_that_fixes_them(services):
    os.chmod(services.data, 0o755)
    os.chmod(services.data / "secret_key", 0o644)
    code, report, _checks, result = _doctor(services)
    assert code == 1, result.output
    fails = _fails(report)
    assert any(f"chmod 700 {services.data}" in m and "0755" in m for m in fails), fails
    assert any(f"chmod 600 {services.data / 'secret_key'}" in m for m in fails), fails


def test_a_device_that_may_join_the_ingest_share_fails(broker):
    from server.messaging import broker_gate

    with broker_gate.GateAdmin.for_services(broker) as admin:  # a wrong ACL: the devices' group may subscribe to #
        answers = admin.run([
            {"command": "removeRoleACL", "rolename": broker_gate.DEVICES_GROUP, "acltype": "subscribePattern",
             "topic": "#"},
            {"command": "addRoleACL", "rolename": broker_gate.DEVICES_GROUP, "acltype": "subscribePattern",
             "topic": "#", "allow": True}])
        assert not [a for a in answers if a.get("error")], answers
    code, report, checks, result = _doctor(broker)
    assert code == 1, result.output
    assert checks["broker-acl"]["status"] == "fail"
    assert any("may join the ingest's shared subscription" in m for m in _fails(report)), _fails(report)


def test_a_missing_ffmpeg_fails(services, tmp_path):
    (tmp_path / "empty-bin").mkdir()
    code, report, checks, result = _doctor(services, PATH=str(tmp_path / "empty-bin"))
    assert code == 1, result.output
    assert checks["ffmpeg"]["status"] == "fail"
    assert "ffmpeg, ffprobe not found on PATH" in checks["ffmpeg"]["message"]
    assert "apt-get install ffmpeg" in checks["ffmpeg"]["message"]


def test_expired_signed_metadata_fails_and_a_full_disk_fails(services):
    from datetime import timedelta

    from server.health import doctor

    now = services.clock()
    services.clock = lambda: now + timedelta(days=800)  # past the root metadata's expiry
    keys = doctor.check_keys(services)
    assert any(f.status == "fail" and "expired" in f.values.get("warning", "") for f in keys), keys
    services.disk_free = lambda _path: 100 * 1024**2
    media = doctor.check_media_store(services)
    assert media.status == "fail" and media.values["free"] == "100 MiB", media
