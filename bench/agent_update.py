"""Benchmark: the bytes a device downloads for an agent update, the agent's wheel alone against the whole release.

In one run it builds two lessoncast wheels from this checkout (versions 0.9.1 and 0.9.2) and the agent's dependency
wheels (pip, from this machine's wheel mirror), registers both releases in a fresh county TUF repository, and lets a
device (``device_agent.update.SelfUpdate`` with python-tuf's ngclient, reading the repository's files through a
counting fetcher) update twice:
  1. to 0.9.1 with an empty wheelhouse: the agent's wheel and every dependency;
  2. to 0.9.2, whose dependencies did not change: the agent's wheel only.
Every byte counts: TUF metadata, the assignment file, the descriptor and the wheels. The reference, from the same run,
is the whole release (agent wheel plus dependencies). Installing (venv, pip) is not measured: it moves no bytes.

    .venv/bin/python bench/agent_update.py
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from device_agent.store import AgentStore  # noqa: E402
from device_agent.update import InstallDir, SelfUpdate  # noqa: E402
from playlists.agent_release import (Assignment, Release, Wheel, assignment_path, descriptor_path,  # noqa: E402
                                     encode_assignments, encode_release)
from playlists.trust import FileFetcher, open_updater  # noqa: E402
from playlists.trust_repository import Repository, init_keys  # noqa: E402
from tests.e2e.agent_releases import build_wheels  # noqa: E402

DEVICE = "r-bench"


class CountingFetcher(FileFetcher):
    """A file fetcher that counts every byte it serves."""

    received = 0

    def _fetch(self, url):
        for chunk in super()._fetch(url):
            self.received += len(chunk)
            yield chunk


def _wheel(path: Path) -> tuple[Wheel, bytes]:
    data = path.read_bytes()
    return Wheel(path.name, len(data), hashlib.sha256(data).hexdigest()), data


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="lc-bench-update-") as tmp:
        tmp = Path(tmp)
        wheels, deps = build_wheels(tmp / "build", {"0.9.1": False, "0.9.2": False})
        now = datetime.now(timezone.utc)
        init_keys(tmp / "keys", tmp / "tuf", "bench", now=now - timedelta(minutes=1))
        repo = Repository(tmp / "tuf", tmp / "keys")
        dep_wheels = [_wheel(p) for p in sorted(deps.glob("*.whl"))]
        releases = {}
        for version in ("0.9.1", "0.9.2"):
            agent, data = _wheel(wheels / f"lessoncast-{version}-py3-none-any.whl")
            release = Release(version, agent, tuple(w for w, _ in dep_wheels))
            files = {agent.path: data, **{w.path: b for w, b in dep_wheels},
                     descriptor_path(version): encode_release(release)}
            repo.add_files(files, now=now)
            releases[version] = release
        store = AgentStore(tmp / "device")
        store.ensure()
        install = InstallDir(tmp / "install")
        (install.root / "releases" / "0.9.0" / "bin").mkdir(parents=True)
        install.switch(install.release("0.9.0"))

        def fake_install(argv, **kwargs):  # installing moves no bytes over the network
            if "venv" in argv:
                (Path(argv[-1]) / "bin").mkdir(parents=True)

        measured = {}
        running = "0.9.0"
        for version in ("0.9.1", "0.9.2"):
            repo.add_files({assignment_path(DEVICE): encode_assignments({DEVICE: Assignment(version)})}, now=now)
            fetcher = CountingFetcher("http://county/", tmp / "tuf")
            tuf = open_updater(store.metadata_dir, (tmp / "tuf" / "metadata" / "1.root.json").read_bytes(),
                               "http://county/metadata/", "http://county/targets/", fetcher=fetcher)
            outcome = SelfUpdate(store, install, running, run=fake_install).check(tuf, DEVICE, lambda need: "")
            assert outcome.result == "switched", outcome
            measured[version] = (fetcher.received, outcome.downloaded_bytes)
            running = version
        release = releases["0.9.2"]
        agent_bytes = release.agent_wheel.length
        whole = sum(w.length for w in release.wheels)
        first_total, first_wheels = measured["0.9.1"]
        second_total, second_wheels = measured["0.9.2"]
    rows = [("first update (empty wheelhouse), all bytes", first_total, whole),
            ("next update (dependencies unchanged), all bytes", second_total, whole),
            ("next update, wheels only", second_wheels, whole),
            ("agent wheel alone", agent_bytes, whole)]
    print(f"{'figure (bytes)':<50}{'measured':>12}{'whole release':>15}{'ratio':>8}")
    for name, value, ref in rows:
        print(f"{name:<50}{value:>12}{ref:>15}{value / ref:>8.3f}")
    print(f"dependencies: {len(release.dependencies)} wheels, {whole - agent_bytes} bytes")
    print(json.dumps({"agent_wheel_bytes": agent_bytes, "release_bytes": whole,
                      "dependency_bytes": whole - agent_bytes, "dependencies": len(release.dependencies),
                      "first_update_bytes": first_total, "first_update_wheel_bytes": first_wheels,
                      "next_update_bytes": second_total, "next_update_wheel_bytes": second_wheels,
                      "next_update_ratio_to_release": round(second_total / whole, 4),
                      "first_update_ratio_to_release": round(first_total / whole, 4)}))


if __name__ == "__main__":
    main()
