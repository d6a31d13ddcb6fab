"""Agent releases and staged rollouts on the server: releases signed as targets (and kept by a publish), stages
moved by what devices report, the admin's actions, and clear refusals through the API."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from playlists.agent_release import assignment_of, assignment_path, descriptor_path, parse_release
from server.agent_releases import releases, rollouts
from server.events.ingest import store_status
from server.programmes import trust
from tests.attendance_data import build_county

NOW = datetime(2026, 12, 3, 2, 0, tzinfo=timezone.utc)


def fake_wheel(directory: Path, name: str, version: str, payload: bytes = b"") -> Path:
    """A small real zip named as a wheel (the server signs bytes; it does not install them)."""
    path = directory / f"{name}-{version}-py3-none-any.whl"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{name}/__init__.py", payload or f"VERSION = {version!r}\n".encode())
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture
def county(services, tmp_path):
    services.clock = lambda: NOW
    if not trust.initialised(services):
        trust.create_keys(services, "test passphrase")
    built = build_county(services, townships=2, sites_per_township=1, members_per_site=2, radios_per_site=2)
    deps = tmp_path / "deps"
    deps.mkdir()
    fake_wheel(deps, "paho_mqtt", "2.1.0")
    for version in ("0.9.1", "0.9.2"):
        releases.add(services, fake_wheel(tmp_path, "lessoncast", version), deps, "test")
    return built


def report(services, uid: str, version: str, update: dict | None = None) -> None:
    body = {"online": True, "agent_version": version, "update": update}
    assert store_status(services, uid, json.dumps(body).encode(), NOW)


def test_a_release_is_signed_as_targets_and_a_publish_keeps_it(services, county):
    repo = trust.repository(services)
    release = parse_release((repo.targets_dir / _consistent(repo, descriptor_path("0.9.2"))).read_bytes())
    assert release.version == "0.9.2" and [w.filename for w in release.dependencies] == \
        ["paho_mqtt-2.1.0-py3-none-any.whl"]
    for wheel in release.wheels:
        info = repo.target_info(wheel.path)
        assert info.length == wheel.length and info.hashes["sha256"] == wheel.sha256
    repo.publish({"channels/c1/manifest.json": b"{}"}, {}, now=NOW)  # what every programme publish does
    assert repo.target_info(descriptor_path("0.9.2")) is not None, "a publish dropped the agent release"
    with pytest.raises(Exception, match="already registered"):
        releases.add(services, Path(services.data.parent / "lessoncast-0.9.2-py3-none-any.whl"), None, "test")


def _consistent(repo, path: str) -> str:
    info = repo.target_info(path)
    head, _, base = path.rpartition("/")
    return f"{head}/{info.hashes['sha256']}.{base}"


def _assigned(services, uid: str):
    repo = trust.repository(services)
    path = assignment_path(uid)
    if repo.target_info(path) is None:
        return None
    return assignment_of((repo.targets_dir / _consistent(repo, path)).read_bytes(), uid)


def test_stages_start_by_themselves_and_the_rollout_pauses_at_its_error_threshold(services, county):
    uids = sorted(uid for uid, _ in county.radios + county.terminals)
    for uid in uids:
        report(services, uid, "0.9.1")
    rollout = rollouts.create(services, {"release": "0.9.2", "stages": [
        {"kind": "devices", "count": 2, "success_pct": 100, "error_pct": 50},
        {"kind": "county", "success_pct": 90, "error_pct": 0}]}, "admin")
    first = rollout["stages"][0]
    assert rollout["state"] == "running" and first["devices"] == 2 and first["pending"] == 2
    stage1 = uids[:2]
    assert _assigned(services, stage1[0]).version == "0.9.2" and _assigned(services, uids[2]) is None
    report(services, stage1[0], "0.9.2", {"state": "healthy", "version": "0.9.2", "attempt": 1})
    assert rollouts.evaluate(services, stage1[0]) == []  # 1 of 2 is short of 100 %
    report(services, stage1[1], "0.9.2", {"state": "healthy", "version": "0.9.2", "attempt": 1})
    assert rollouts.evaluate(services, stage1[1]) == [rollout["id"]]
    shown = rollouts.show(services, rollout["id"])
    assert shown["current_stage"] == 1 and shown["stages"][0]["state"] == "passed"
    assert shown["stages"][1]["devices"] == len(uids) - 2
    assert _assigned(services, uids[-1]).version == "0.9.2"
    report(services, uids[2], "0.9.1", {"state": "failed", "version": "0.9.2", "attempt": 1,
                                         "reason": "exited with code 3 at start"})
    rollouts.evaluate(services, uids[2])
    paused = rollouts.show(services, rollout["id"])
    assert paused["state"] == "paused" and "error threshold" in paused["reason"]
    assert paused["stages"][1]["failures"] == {uids[2]: "exited with code 3 at start"}
    retried = rollouts.act(services, rollout["id"], "retry-failed", "admin")
    assert retried["state"] == "running" and retried["attempt"] == 2 and retried["stages"][1]["failed"] == 0
    assert _assigned(services, uids[2]).attempt == 2
    cancelled = rollouts.act(services, rollout["id"], "cancel", "admin")
    assert cancelled["state"] == "cancelled" and _assigned(services, uids[2]) is None


def test_a_manual_rollout_waits_for_an_admin_and_a_time_limit_pauses(services, county):
    uids = sorted(uid for uid, _ in county.radios + county.terminals)
    rollout = rollouts.create(services, {"release": "0.9.2", "auto_advance": False, "stages": [
        {"kind": "devices", "count": 1, "success_pct": 100, "time_limit_min": 30},
        {"kind": "township", "township": "t01", "time_limit_min": 30}]}, "admin")
    report(services, uids[0], "0.9.2", {"state": "healthy", "version": "0.9.2", "attempt": 1})
    rollouts.evaluate(services)
    assert rollouts.show(services, rollout["id"])["state"] == "waiting"
    resumed = rollouts.act(services, rollout["id"], "resume", "admin")
    assert resumed["state"] == "running" and resumed["current_stage"] == 1 and resumed["stages"][1]["devices"] > 0
    services.clock = lambda: NOW + timedelta(minutes=31)
    rollouts.evaluate(services)
    late = rollouts.show(services, rollout["id"])
    assert late["state"] == "paused" and "within 30 min" in late["reason"]


def test_an_older_release_needs_a_pinned_rollback(services, county):
    uid = county.radios[0][0]
    report(services, uid, "0.9.2")
    with pytest.raises(Exception, match="older"):
        rollouts.create(services, {"release": "0.9.1", "stages": [{"kind": "county"}]}, "admin")
    pinned = rollouts.create(services, {"release": "0.9.1", "allow_downgrade": True,
                                        "stages": [{"kind": "county"}]}, "admin")
    assert pinned["allow_downgrade"] and _assigned(services, uid).allow_downgrade


def test_the_api_is_for_admins_and_refuses_bad_input_clearly(services, county, client, auth):
    admin, viewer = auth("admin"), auth("viewer")
    assert client.get("/api/v1/agent-rollouts", headers=viewer).status_code == 403
    assert client.get("/api/v1/agent-releases", headers=auth("media")).status_code == 403
    listed = client.get("/api/v1/agent-releases", headers=admin).get_json()["releases"]
    assert [r["version"] for r in listed] == ["0.9.2", "0.9.1"]
    bad = [({"release": "0.9.2", "stages": []}, 422, "bad_rollout"),
           ({"release": "0.9.2", "stages": [{"kind": "planet"}]}, 422, "bad_rollout"),
           ({"release": "0.9.2", "stages": [{"kind": "devices", "count": 0}]}, 422, "bad_rollout"),
           ({"release": "0.9.2", "stages": [{"kind": "county"}, {"kind": "devices", "count": 1}]}, 422,
            "bad_rollout"),
           ({"release": "0.9.2", "stages": [{"kind": "township", "township": "nowhere"}]}, 422, "bad_rollout"),
           ({"release": "0.9.2", "stages": [{"kind": "county", "error_pct": 101}]}, 422, "bad_rollout"),
           ({"release": "0.9.2", "stages": [{"kind": "township", "township": ["t00"]}]}, 422, "bad_rollout"),
           ({"release": "0.9.2", "stages": [{"kind": "county"}], "auto_advance": "yes"}, 422, "bad_rollout"),
           ({"release": ["0.9.2"], "stages": [{"kind": "county"}]}, 422, "bad_rollout"),
           ({"release": "0.9.2", "stages": "county"}, 422, "bad_rollout"),
           ({"release": "7.7.7", "stages": [{"kind": "county"}]}, 404, "no_release")]
    for body, status, code in bad:
        answer = client.post("/api/v1/agent-rollouts", json=body, headers=admin)
        assert (answer.status_code, answer.get_json()["error"]["code"]) == (status, code), body
    made = client.post("/api/v1/agent-rollouts", json={"release": "0.9.2", "stages": [{"kind": "county"}]},
                       headers=admin)
    assert made.status_code == 201
    rid = made.get_json()["id"]
    again = client.post("/api/v1/agent-rollouts", json={"release": "0.9.2", "stages": [{"kind": "county"}]},
                        headers=admin)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "rollout_active"
    assert client.post(f"/api/v1/agent-rollouts/{rid}/explode", headers=admin).status_code == 422
    assert client.post(f"/api/v1/agent-rollouts/{rid}/resume", headers=admin).status_code == 409
    assert client.post(f"/api/v1/agent-rollouts/{rid}/pause", headers=admin).get_json()["state"] == "paused"
    assert client.get("/api/v1/agent-rollouts/999", headers=admin).status_code == 404


def test_the_command_line_registers_a_release_and_runs_a_rollout(services, county, tmp_path):
    from click.testing import CliRunner

    from lessoncast.cli import main
    from tests.conftest import cli_env

    env = cli_env(services)

    def run(*args):
        return CliRunner().invoke(main, list(args), env=env)

    added = run("agent-release", "add", str(fake_wheel(tmp_path, "lessoncast", "0.9.5")))
    assert added.exit_code == 0 and "Agent release 0.9.5 signed: 1 wheels" in added.output, added.output
    refused = run("agent-release", "add", str(fake_wheel(tmp_path, "paho_mqtt", "3.0.0")))
    assert refused.exit_code != 0 and "not of lessoncast" in refused.output
    assert "0.9.5" in run("agent-release", "list").output
    made = run("rollout", "create", "0.9.5", "--stage", "1,success=100,error=0,limit=60", "--stage", "county",
               "--manual")
    assert made.exit_code == 0 and "agent 0.9.5, running" in made.output and "1 devices" in made.output, made.output
    bad = run("rollout", "create", "0.9.5", "--stage", "planet")
    assert bad.exit_code != 0 and "township:CODE or county" in bad.output
    rid = made.output.split()[1].rstrip(":")
    paused = run("rollout", "pause", rid)
    assert paused.exit_code == 0 and "paused" in paused.output
    assert run("rollout", "cancel", rid).exit_code == 0
    assert "cancelled" in run("rollout", "list").output
