"""The extras are complete: a fresh venv with only ``lessoncast[server]`` imports every server module and creates the
signing keys; one with only ``lessoncast[agent]`` imports every device_agent module without the server's stack.

The dependencies' wheels are built once into a cache outside the checkout (pip's own cache and find-links serve
them; PyPI only the first time), keyed by pyproject.toml; lessoncast's own wheel is built from this checkout for
each run. Each venv then installs with ``--no-index``, so a test takes seconds, not a download.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from server.file_lock import exclusive

pytestmark = pytest.mark.long_running(80)  # seconds of a worker; see tests/conftest.py

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lessoncast", "server", "media", "playlists", "device_agent", "firmware_stub")


def _pip(python: Path, *args: str, timeout: float = 600) -> None:
    result = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args],
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"pip {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="session")
def wheels(tmp_path_factory) -> Path:
    """A directory holding lessoncast's wheel (from this checkout) and every dependency wheel of its extras."""
    # Build from a copy, so no build/ or egg-info lands in the checkout.
    source = tmp_path_factory.mktemp("source")
    for name in (*PACKAGES, "pyproject.toml", "README.md"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    pyproject = (ROOT / "pyproject.toml").read_bytes()
    cache_root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lessoncast-test-wheels"
    deps = cache_root / hashlib.sha256(pyproject).hexdigest()[:16]
    # One builder at a time: xdist workers and other checkouts' test runs share this cache.
    with exclusive(deps.with_suffix(".lock")):
        if not (deps / ".complete").exists():
            shutil.rmtree(deps, ignore_errors=True)
            deps.mkdir(parents=True)
            # The build backend too, so the project's own wheel builds without an index.
            _pip(Path(sys.executable), "wheel", "-w", str(deps), "setuptools>=77", "wheel")
            _pip(Path(sys.executable), "wheel", "-w", str(deps), f"{source}[server,agent]", timeout=1200)
            for built in deps.glob("lessoncast-*.whl"):
                built.unlink()  # built from whatever the checkout held then: rebuilt below for every run
            (deps / ".complete").touch()
    own = tmp_path_factory.mktemp("own")
    _pip(Path(sys.executable), "wheel", "--no-deps", "--no-index", "--find-links", str(deps), "-w", str(own),
         str(source))
    for wheel in deps.glob("*.whl"):
        os.symlink(wheel, own / wheel.name)
    return own


def _fresh_venv(path: Path, wheels: Path, requirement: str) -> Path:
    venv.create(path, with_pip=True)
    python = path / "bin" / "python"
    _pip(python, "install", "--no-index", "--find-links", str(wheels), requirement)
    return python


def _run(python: Path, code: str, **kwargs) -> subprocess.CompletedProcess:
    # From a neutral directory, so the checkout's packages cannot be imported instead of the installed ones.
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=kwargs.pop("cwd"), **kwargs)


IMPORT_ALL = """
import importlib, pkgutil, sys
package = importlib.import_module(sys.argv[1] if len(sys.argv) > 1 else {package!r})
assert "site-packages" in package.__file__, package.__file__
names = [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
         if ".migrations." not in m.name]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def test_the_server_extra_alone_imports_every_server_module_and_creates_keys(wheels, tmp_path):
    python = _fresh_venv(tmp_path / "venv", wheels, "lessoncast[server]")
    imported = _run(python, IMPORT_ALL.format(package="server"), cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert int(imported.stdout) > 60
    data = tmp_path / "data"
    env = {key: value for key, value in os.environ.items() if not key.startswith("LESSONCAST_")}
    env.update(LESSONCAST_DATA_DIR=str(data), LESSONCAST_ROOT_PASSPHRASE="correct horse battery staple")
    # Only `init` (and `run`) create an instance; `init` creates the keys too.
    keys = subprocess.run([str(tmp_path / "venv" / "bin" / "lessoncast"), "init"], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, env=env)
    assert keys.returncode == 0, keys.stdout + keys.stderr
    assert list(data.rglob("root.json")), "init wrote no root metadata"


def test_the_agent_extra_alone_imports_every_agent_module_without_the_server_stack(wheels, tmp_path):
    python = _fresh_venv(tmp_path / "venv", wheels, "lessoncast[agent]")
    imported = _run(python, IMPORT_ALL.format(package="device_agent"), cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    absent = _run(python, "import importlib.util as u; print([m for m in ('flask', 'sqlalchemy', 'ffmpeg') "
                          "if u.find_spec(m) is not None])", cwd=tmp_path)
    assert absent.returncode == 0 and absent.stdout.strip() == "[]", absent.stdout + absent.stderr
    agent = subprocess.run([str(tmp_path / "venv" / "bin" / "lessoncast"), "agent", "--help"], capture_output=True,
                           text=True, timeout=60, cwd=tmp_path)
    assert agent.returncode == 0, agent.stderr
