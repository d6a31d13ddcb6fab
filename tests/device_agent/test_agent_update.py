"""The device's side of an agent update, against a real county TUF repository on disk: what it installs, what it
refuses (a tampered wheel, an unsigned release, a downgrade nobody pinned, a release that cannot read its state), and
the launcher rolling back a release that fails its trial."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click
import pytest

from device_agent.cli import _single_agent_lock
from device_agent.launcher import Launcher
from device_agent.store import AgentStore
from device_agent.update import InstallDir, SelfUpdate
from playlists.agent_release import (Assignment, Release, Wheel, assignment_path, descriptor_path, encode_assignments,
                                     encode_release)
from playlists.trust import FileFetcher, open_updater
from playlists.trust_repository import Repository, init_keys

DEVICE = "r-0001"


def wheel_bytes(name: str, version: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{name}/__init__.py", f"VERSION = {version!r}\n" + "#" * 5000)
    return buffer.getvalue()


class County:
    """A county repository with releases, and a device that reads it through ngclient from the files."""

    def __init__(self, tmp: Path):
        self.now = datetime.now(timezone.utc)
        self.repo_dir = tmp / "tuf"
        init_keys(tmp / "keys", self.repo_dir, "passphrase", now=self.now - timedelta(minutes=1))
        self.repo = Repository(self.repo_dir, tmp / "keys")
        self.store = AgentStore(tmp / "device")
        self.store.ensure()
        self.install = InstallDir(tmp / "install")
        (self.install.root / "releases" / "0.9.1" / "bin").mkdir(parents=True)
        self.install.switch(self.install.release("0.9.1"))
        self.installed: list[list[str]] = []

    def release(self, version: str, *, dep: str = "2.1.0", reads_state_from: int = 1) -> Release:
        files = {}
        wheels = []
        for name, v in (("lessoncast", version), ("paho_mqtt", dep)):
            data = wheel_bytes(name, v)
            import hashlib

            w = Wheel(f"{name}-{v}-py3-none-any.whl", len(data), hashlib.sha256(data).hexdigest())
            files[w.path] = data
            wheels.append(w)
        release = Release(version, wheels[0], (wheels[1],), reads_state_from)
        files[descriptor_path(version)] = encode_release(release)
        self.repo.add_files(files, now=self.now)
        return release

    def assign(self, version: str, **kw) -> None:
        self.repo.add_files({assignment_path(DEVICE): encode_assignments({DEVICE: Assignment(version, **kw)})},
                            now=self.now)

    def tuf(self):
        return open_updater(self.store.metadata_dir, (self.repo_dir / "metadata" / "1.root.json").read_bytes(),
                            "http://county/metadata/", "http://county/targets/",
                            fetcher=FileFetcher("http://county/", self.repo_dir))

    def fake_pip(self, argv, **kwargs):
        """Stands in for `python -m venv` and pip: makes the environment directory (installing is pip's job)."""
        self.installed.append([str(a) for a in argv])
        if "venv" in argv:
            (Path(argv[-1]) / "bin").mkdir(parents=True)

    def check(self, running: str = "0.9.1"):
        update = SelfUpdate(self.store, self.install, running, run=self.fake_pip)
        return update, update.check(self.tuf(), DEVICE, lambda need: "")


@pytest.fixture
def county(tmp_path) -> County:
    return County(tmp_path)


def test_an_assigned_release_is_installed_beside_the_running_one_and_current_switches(county):
    release = county.release("0.9.2")
    county.assign("0.9.2")
    update, outcome = county.check()
    assert outcome.result == "switched" and outcome.downloaded_bytes == sum(w.length for w in release.wheels)
    assert os.readlink(county.install.current) == "releases/0.9.2"
    assert county.install.release("0.9.1").is_dir(), "the previous environment is kept for a rollback"
    state = update.state()
    assert state["state"] == "trial" and state["previous"] == "releases/0.9.1" and state["from"] == "0.9.1"
    _, again = county.check()
    assert again.result == "none", "a second check before the restart must not rebuild the switched-to release"
    pip = county.installed[-1]
    assert "--no-index" in pip and "lessoncast[agent]==0.9.2" in pip
    # The next release shares the unchanged dependency: only the agent's wheel is downloaded.
    newer = county.release("0.9.3")
    county.assign("0.9.3")
    _, outcome = county.check(running="0.9.2")
    assert outcome.result == "switched" and outcome.downloaded_bytes == newer.agent_wheel.length


def test_a_tampered_wheel_is_refused_and_nothing_switches(county):
    release = county.release("0.9.2")
    county.assign("0.9.2")
    stored = county.repo_dir / "targets" / "agent" / "wheels" / f"{release.agent_wheel.sha256}.{release.agent_wheel.filename}"
    data = bytearray(stored.read_bytes())
    data[100] ^= 0xFF  # same length, other bytes: a mirror or a USB stick changed it
    stored.write_bytes(bytes(data))
    update, outcome = county.check()
    assert outcome.result == "refused" and "failed verification" in outcome.reason
    assert os.readlink(county.install.current) == "releases/0.9.1"
    assert not (county.install.wheelhouse / release.agent_wheel.filename).exists()
    assert update.state()["state"] == "refused"


def test_a_release_the_targets_key_did_not_sign_is_refused(county):
    county.release("0.9.2")
    county.assign("0.9.4")  # a release.json for 0.9.4 lies in the targets directory, unsigned
    forged = county.repo_dir / "targets" / "agent" / "releases" / "0.9.4"
    forged.mkdir(parents=True)
    (forged / "release.json").write_bytes((county.repo_dir / "targets" / "agent" / "releases" / "0.9.2").joinpath(
        next(p.name for p in (county.repo_dir / "targets" / "agent" / "releases" / "0.9.2").iterdir())).read_bytes())
    _, outcome = county.check()
    assert outcome.result == "refused" and "not signed by the county's targets key" in outcome.reason
    assert os.readlink(county.install.current) == "releases/0.9.1"


def test_an_older_release_is_refused_unless_an_admin_pinned_the_rollback(county):
    county.release("0.9.0")
    county.assign("0.9.0")
    _, outcome = county.check()
    assert outcome.result == "refused" and "older than the running 0.9.1" in outcome.reason
    _, outcome = county.check()
    assert outcome.result == "none", "a refused release is not tried again at every sync"
    county.assign("0.9.0", allow_downgrade=True, attempt=2)
    _, outcome = county.check()
    assert outcome.result == "switched" and os.readlink(county.install.current) == "releases/0.9.0"


def test_a_release_that_cannot_read_this_devices_state_is_refused(county):
    county.release("0.9.2", reads_state_from=2)
    county.assign("0.9.2")
    _, outcome = county.check()
    assert outcome.result == "refused" and "state format 2" in outcome.reason


def test_the_data_budget_defers_an_update(county):
    county.release("0.9.2")
    county.assign("0.9.2")
    update = SelfUpdate(county.store, county.install, "0.9.1", run=county.fake_pip)
    outcome = update.check(county.tuf(), DEVICE, lambda need: f"{need} bytes would pass the budget")
    assert outcome.result == "deferred" and "budget" in outcome.reason
    assert not county.install.wheelhouse.exists()


def test_two_agents_never_run_on_one_data_directory(tmp_path):
    store = AgentStore(tmp_path / "device")
    held = _single_agent_lock(store)
    with pytest.raises(click.ClickException, match="Another agent is running"):
        _single_agent_lock(store)
    held.close()
    _single_agent_lock(store).close()


def _script(path: Path, body: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    exe = path / "lessoncast"
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)


def test_the_launcher_rolls_back_a_release_that_exits_at_start(county):
    _script(county.install.release("0.9.2") / "bin", "echo 'ImportError: broken build' >&2\nexit 3\n")
    county.install.switch(county.install.release("0.9.2"))
    county.store.write_json("agent_update.json", {"state": "trial", "version": "0.9.2", "attempt": 1,
                                                  "previous": "releases/0.9.1", "from": "0.9.1"})
    launcher = Launcher(county.install, county.store, [], trial_s=60)
    assert launcher.run_once() == 3
    assert os.readlink(county.install.current) == "releases/0.9.1"
    state = county.store.read_json("agent_update.json")
    assert state["state"] == "rolled_back" and state["version"] == "0.9.2"
    assert "code 3" in state["reason"] and "ImportError: broken build" in state["reason"]


def test_the_launcher_rolls_back_a_release_that_never_becomes_healthy(county):
    _script(county.install.release("0.9.2") / "bin", "exec sleep 60\n")
    county.install.switch(county.install.release("0.9.2"))
    county.store.write_json("agent_update.json", {"state": "trial", "version": "0.9.2", "attempt": 1,
                                                  "previous": "releases/0.9.1", "from": "0.9.1"})
    launcher = Launcher(county.install, county.store, [], trial_s=1)
    launcher.run_once()
    assert os.readlink(county.install.current) == "releases/0.9.1"
    assert "did not connect and sync within 1 s" in county.store.read_json("agent_update.json")["reason"]


def test_the_agent_reports_the_version_its_package_carries():
    """One version: the package's (what a release is built as, and what a device runs under the launcher reports) is
    the agent's own AGENT_VERSION, which the server compares to decide who reads slot days. Two numbers let a release
    built from this checkout look older than the agents it should replace."""
    import tomllib

    from device_agent.agent import AGENT_VERSION

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["version"] == AGENT_VERSION
