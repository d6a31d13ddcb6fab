"""The agent updating itself: read this device's signed assignment, fetch the release's wheels through TUF, install
them into a new environment beside the running one, and switch the ``current`` symlink atomically.

Layout of the install directory (``LESSONCAST_AGENT_INSTALL_DIR``, e.g. /opt/lessoncast-agent)::

    current -> releases/1.4.2      the environment the launcher (or systemd) starts
    releases/<version>/            one virtual environment per release, never changed after install
    wheelhouse/<file>.whl          verified wheels; a dependency unchanged between releases is not fetched again

The data directory (outbox, trusted metadata, media) is never inside a release, so it survives every update and
rollback. ``agent_update.json`` in the data directory records the step an update is at; the launcher
(``device_agent.launcher``) reads it to run the new release on trial and to roll back a release that fails.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from playlists.agent_release import (Release, ReleaseError, assignment_of, assignment_path, descriptor_path,
                                     parse_release, version_key)
from playlists.trust import TrustError, _tuf_errors, fetch_manifest

log = logging.getLogger(__name__)
STATE_FORMAT = 1  # the format of the outbox and the state files this agent writes
UPDATE_FILE = "agent_update.json"
RESTART_EXIT = 75  # the agent exits with this after switching: start `current` again (EX_TEMPFAIL)
INSTALL_DIR_ENV = "LESSONCAST_AGENT_INSTALL_DIR"


def running_version() -> str:
    """The version of the installed lessoncast distribution this agent runs from."""
    return importlib.metadata.version("lessoncast")


class Refused(Exception):
    """A release this device must not install: unsigned, tampered, older, or unable to read this device's state."""


@dataclass(frozen=True)
class InstallDir:
    """Where releases live: releases/<version>, the ``current`` symlink and the wheelhouse."""

    root: Path

    @property
    def current(self) -> Path:
        """The symlink to the environment that runs."""
        return self.root / "current"

    def release(self, version: str) -> Path:
        """The environment of a release."""
        return self.root / "releases" / version

    @property
    def wheelhouse(self) -> Path:
        """Verified wheels, kept so that unchanged dependencies are not downloaded again."""
        return self.root / "wheelhouse"

    def switch(self, target: Path) -> None:
        """Point ``current`` at TARGET atomically (a new symlink renamed over the old one)."""
        tmp = self.root / ".current.new"
        tmp.unlink(missing_ok=True)
        os.symlink(os.path.relpath(target, self.root), tmp)
        os.replace(tmp, self.current)
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 16):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Outcome:
    """What an update check did: "none", "deferred", "refused", "failed" or "switched", with why."""

    result: str
    version: Optional[str] = None
    reason: str = ""
    downloaded_bytes: int = 0


class SelfUpdate:
    """One device's update check, over its store and install directory."""

    def __init__(self, store, install: InstallDir, version: str, *,
                 run: Callable[..., subprocess.CompletedProcess] = subprocess.run):
        self.store = store
        self.install = install
        self.version = version
        self._run = run

    # -- the update state, shared with the launcher ---------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The update state (empty when no update ever ran)."""
        return self.store.read_json(UPDATE_FILE) or {}

    def set_state(self, **state: Any) -> None:
        """Replace the update state atomically."""
        self.store.write_json(UPDATE_FILE, state)

    # -- the check ------------------------------------------------------------------------------------------------
    def check(self, tuf, device: str, room_for: Callable[[int], str]) -> Outcome:
        """Install the release assigned to DEVICE if there is one to install; ROOM_FOR(bytes) names a limit hit."""
        path = assignment_path(device)
        with _tuf_errors(f"refreshing signed metadata for {path}"):
            info = tuf.get_targetinfo(path)
        if info is None:
            return Outcome("none")
        try:
            assignment = assignment_of(fetch_manifest(tuf, path, self.store.partial_dir / "agent"), device)
        except ReleaseError as exc:
            raise TrustError(f"{path}: {exc}") from None
        if assignment is None or assignment.version == self.version:
            return Outcome("none")
        state = self.state()
        if state.get("version") == assignment.version and state.get("state") == "trial":
            return Outcome("none")  # switched already: the restart into it is under way
        if state.get("version") == assignment.version and state.get("state") in ("failed", "refused") \
                and int(state.get("attempt", 1)) >= assignment.attempt:
            return Outcome("none")  # tried and failed: only a retry (a higher attempt) tries again
        try:
            release = self._release(tuf, assignment)
        except Refused as exc:
            self.set_state(state="refused", version=assignment.version, reason=str(exc), attempt=assignment.attempt)
            return Outcome("refused", assignment.version, str(exc))
        missing = [w for w in release.wheels if not self._have(w)]
        need = sum(w.length for w in missing)
        problem = room_for(need)
        if problem:
            return Outcome("deferred", release.version, problem)
        try:
            for wheel in missing:
                self._download(tuf, wheel)
        except TrustError as exc:
            reason = f"a wheel of {release.version} failed verification: {exc}"
            self.set_state(state="refused", version=release.version, reason=reason, attempt=assignment.attempt)
            return Outcome("refused", release.version, reason, need)
        try:
            env = self._install(release)
        except (OSError, subprocess.SubprocessError) as exc:
            reason = f"installing {release.version} failed: {exc}"
            self.set_state(state="failed", version=release.version, reason=reason[:500], attempt=assignment.attempt)
            return Outcome("failed", release.version, reason, need)
        previous = os.readlink(self.install.current) if self.install.current.is_symlink() else None
        self.set_state(state="trial", version=release.version, previous=previous, attempt=assignment.attempt,
                       **{"from": self.version})
        self.install.switch(env)
        return Outcome("switched", release.version, downloaded_bytes=need)

    def _release(self, tuf, assignment) -> Release:
        if version_key(assignment.version) < version_key(self.version) and not assignment.allow_downgrade:
            raise Refused(f"{assignment.version} is older than the running {self.version}; a county admin must pin "
                          "a rollback (allow_downgrade) to install an older agent")
        try:
            release = parse_release(fetch_manifest(tuf, descriptor_path(assignment.version),
                                                   self.store.partial_dir / "agent"))
        except ReleaseError as exc:
            raise Refused(f"release {assignment.version}: {exc}") from None
        except TrustError as exc:
            raise Refused(f"release {assignment.version} is not signed by the county's targets key: {exc}") from None
        if release.version != assignment.version:
            raise Refused(f"release.json names {release.version}, the assignment {assignment.version}")
        if release.reads_state_from > STATE_FORMAT:
            raise Refused(f"{release.version} reads state format {release.reads_state_from} and newer; this "
                          f"device's outbox and state are format {STATE_FORMAT}: install an intermediate release "
                          "first")
        for wheel in release.wheels:
            with _tuf_errors(f"refreshing signed metadata for {wheel.path}"):
                info = tuf.get_targetinfo(wheel.path)
            if info is None or info.length != wheel.length or info.hashes.get("sha256") != wheel.sha256:
                raise Refused(f"{wheel.filename} is not signed as release {release.version} describes it")
        return release

    def _have(self, wheel) -> bool:
        path = self.install.wheelhouse / wheel.filename
        return path.is_file() and path.stat().st_size == wheel.length and _sha256(path) == wheel.sha256

    def _download(self, tuf, wheel) -> None:
        self.install.wheelhouse.mkdir(parents=True, exist_ok=True)
        partial = self.store.partial_dir / f"{wheel.filename}.part"
        partial.unlink(missing_ok=True)
        with _tuf_errors(f"downloading {wheel.path}"):
            info = tuf.get_targetinfo(wheel.path)
            if info is None:
                raise TrustError(f"{wheel.path} is not a signed target")
            tuf.download_target(info, str(partial))  # ngclient checks the signed length and sha256
        os.replace(partial, self.install.wheelhouse / wheel.filename)

    def _install(self, release: Release) -> Path:
        """A new environment with exactly the release's wheels, from the wheelhouse, without an index.

        A virtual environment cannot move (its scripts name their interpreter by absolute path), so it is built at
        its final place; it becomes the running one only when ``current`` switches to it.
        """
        final = self.install.release(release.version)
        links = final.with_name(f".{release.version}.wheels")
        if final.exists():
            if self.install.current.resolve() == final.resolve():
                raise OSError(f"{final} is the running release")
            shutil.rmtree(final)  # what an earlier, failed attempt left
        shutil.rmtree(links, ignore_errors=True)
        links.mkdir(parents=True)
        for wheel in release.wheels:
            os.symlink(self.install.wheelhouse / wheel.filename, links / wheel.filename)
        base = getattr(sys, "_base_executable", sys.executable)
        try:
            self._run([base, "-m", "venv", str(final)], check=True, capture_output=True, timeout=600)
            self._run([str(final / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                       "--no-index", "--find-links", str(links), f"lessoncast[agent]=={release.version}"],
                      check=True, capture_output=True, timeout=1200)
        except (OSError, subprocess.SubprocessError):
            shutil.rmtree(final, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(links, ignore_errors=True)
        return final
