"""Agent releases for end-to-end tests: lessoncast wheels of chosen versions built from this checkout (one of them
broken on purpose), their dependencies' wheels, and a device install directory with a first release in it.

Wheels are built once per test session into a directory every xdist worker shares, under a lock
(``server.file_lock.exclusive``); pip finds the dependencies on this machine's wheel mirror, not the internet.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from device_agent.update import InstallDir
from server.file_lock import exclusive

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("lessoncast", "server", "media", "playlists", "device_agent", "firmware_stub")
BROKEN = '    """Run the agent until SIGTERM or Ctrl-C."""\n'


def _pip(*args: str, python: str = sys.executable, timeout: float = 900) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LESSONCAST_", "PYTHON"))}
    result = subprocess.run([python, "-m", "pip", "--disable-pip-version-check", "-q", *args], capture_output=True,
                            text=True, timeout=timeout, env=env, cwd="/")
    assert result.returncode == 0, f"pip {' '.join(args)} failed:\n{result.stdout}\n{result.stderr[-3000:]}"


def _source(dest: Path, version: str, broken: bool) -> Path:
    for name in (*PACKAGES, "pyproject.toml", "README.md"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.mo"))
        else:
            shutil.copy2(ROOT / name, dest / name)
    pyproject = dest / "pyproject.toml"
    text, count = re.subn(r'^version = "[^"]*"$', f'version = "{version}"', pyproject.read_text(), count=1, flags=re.M)
    assert count == 1, "pyproject.toml has no version line to set"
    pyproject.write_text(text)
    if broken:  # a release that installs fine and exits the moment it starts, as a bad build would
        cli = dest / "device_agent" / "cli.py"
        text = cli.read_text()
        assert BROKEN in text
        cli.write_text(text.replace(BROKEN, BROKEN + '    raise SystemExit("this build is broken: it cannot start")\n'))
    return dest


def source_digest() -> str:
    """A digest of the checkout's code, so wheels built from other code are never reused."""
    import hashlib

    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def build_wheels(base: Path, versions: dict[str, bool]) -> tuple[Path, Path]:
    """(wheels, deps): lessoncast wheels of VERSIONS ({version: broken}) and the agent's dependency wheels."""
    base = base / source_digest()
    base.mkdir(parents=True, exist_ok=True)
    wheels, deps = base / "wheels", base / "deps"
    with exclusive(base / "build.lock"):
        if not (base / ".complete").exists():
            shutil.rmtree(wheels, ignore_errors=True)
            shutil.rmtree(deps, ignore_errors=True)
            procs = []
            for version, broken in versions.items():
                src = _source(base / f"src-{version}", version, broken)
                procs.append(subprocess.Popen([sys.executable, "-m", "pip", "-q", "wheel", "--no-deps", "-w",
                                               str(wheels), str(src)], cwd="/", stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT))
            first = next(iter(versions))
            for proc in procs:
                out = proc.communicate(timeout=900)[0]
                assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
            _pip("wheel", "-w", str(deps), f"{wheels / f'lessoncast-{first}-py3-none-any.whl'}[agent]")
            for own in deps.glob("lessoncast-*.whl"):
                own.unlink()
            (base / ".complete").touch()
    return wheels, deps


def install_first_release(install: InstallDir, version: str, wheels: Path, deps: Path) -> Path:
    """A device's install directory with release VERSION in releases/VERSION and ``current`` pointing at it."""
    env_dir = install.release(version)
    # Without pip of its own (the test's pip installs into it): the agent builds the next release's environment
    # with that environment's own pip, so this one never needs it, and ensurepip costs seconds per device.
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(env_dir)],
                   check=True, timeout=600, capture_output=True)
    _pip("--python", str(env_dir / "bin" / "python"), "install", "--no-index", "--find-links", str(wheels),
         "--find-links", str(deps), f"lessoncast[agent]=={version}")
    install.switch(env_dir)
    return env_dir
