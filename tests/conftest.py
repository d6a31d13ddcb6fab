"""Shared fixtures: a fresh instance (data directory, migrated SQLite) per test, its app, tokens and job runner."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path
from typing import Callable

import pytest
from sqlalchemy import select

from server import settings as settings_mod
from server.accounts.auth import create_token
from server.app import create_app
from server.instance import initialise
from server.jobs.models import Job
from server.services import Services


# Ports under pytest-xdist: each worker (gw0, gw1, ...) hands out ports from a block of its own below the kernel's
# ephemeral range. Two workers never pick the same port, and no client's outgoing connection (which takes an
# ephemeral port) can grab a port between the pick and the server's bind. Serial runs use block 0.
PORT_BLOCK = 1000
_ports = {"next": None}


def worker_id() -> str:
    """This pytest-xdist worker's id ("gw0", "gw1", ...), or "main" when the tests run in one process."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _port_block() -> range | None:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    blocks = (low - 10000) // PORT_BLOCK  # ports from 10000 up to the ephemeral range
    if blocks < 2:
        return None
    index = int(worker_id()[2:]) + 1 if worker_id().startswith("gw") else 0
    start = 10000 + (index % blocks) * PORT_BLOCK
    return range(start, start + PORT_BLOCK)


def free_port() -> int:
    """A TCP port nobody listens on right now, unique to this xdist worker (see PORT_BLOCK)."""
    block = _port_block()
    if block is None:  # no ephemeral range to stay out of: let the kernel choose
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    if _ports["next"] is None:  # a random start, so two test runs at once rarely meet
        _ports["next"] = secrets.randbelow(len(block))
    for _ in range(len(block)):
        port = block[_ports["next"] % len(block)]
        _ports["next"] += 1
        with socket.socket() as sock:
            try:  # no SO_REUSEADDR: a port still in TIME_WAIT is skipped too
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {block.start}-{block.stop - 1}")


# pytest-xdist: `make test` runs `pytest -n N --dist loadfile`, which sends each test file whole to one worker, so a
# module-scoped fixture is built once. A folder whose files share session-scoped fixtures (built once per worker) is
# listed here and goes to one worker as a whole. (xdist_group marks with --dist loadgroup would say the same per
# test, but pytest 9.2 ignores the node id suffix they rely on: pytest-xdist issue #1386.)
SHARED_SESSION_FOLDERS = ("tests/media/",)


def pytest_xdist_make_scheduler(config, log):
    """--dist loadfile, with each folder of SHARED_SESSION_FOLDERS as one unit."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class LoadFileOrFolder(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return next((folder for folder in SHARED_SESSION_FOLDERS if scope.startswith(folder)), scope)

    return LoadFileOrFolder(config, log)


def make_services(data_dir: Path, **overrides) -> Services:
    """Services on a new data directory, settings from arguments only (the environment is ignored)."""
    settings = settings_mod.load(environ={}, overrides={"data_dir": str(data_dir), **overrides})
    services = Services(settings)
    initialise(services)
    return services


def stage_file(services: Services, path: Path):
    """Put a file into the upload area as an upload would, hashed, ready for ``lessons.ingest``."""
    from server.lessons.service import StagedFile
    from server.lessons.upload_stream import HashingFile

    staged = HashingFile(services.upload_dir)
    staged.write(path.read_bytes())
    staged.close_file()
    return StagedFile(staged.path, staged.sha256, staged.size)


@pytest.fixture
def services(tmp_path) -> Services:
    """A fresh, initialised instance on a temporary SQLite database."""
    # The web port is chosen here, so the URLs the server hands out (enrolment answers) reach `live_server`.
    svc = make_services(tmp_path / "data", port=free_port(), mqtt_port=free_port(), mqtt_server_port=free_port())
    yield svc
    svc.db.dispose()


@pytest.fixture
def app(services):
    """The Flask app on the fresh instance."""
    return create_app(services=services)


@pytest.fixture
def client(app):
    """A test client for the app."""
    return app.test_client()


@pytest.fixture
def token(services) -> Callable[[str], str]:
    """Make an API token for a role: token('media'). An operator's township must exist: the default, qs, is the
    `org` fixture's 青山镇, so a test that uses it asks for `org` too."""

    def make(role: str = "media", township: str | None = None) -> str:
        with services.db.session() as session:
            return create_token(session, name=f"test-{role}", role=role,
                                township=township or ("qs" if role == "operator" else None),
                                now=services.clock())

    return make


@pytest.fixture
def auth(token) -> Callable[[str], dict]:
    """Authorization headers for a role: auth('media')."""
    return lambda role="media": {"Authorization": f"Bearer {token(role)}"}


@pytest.fixture
def drain(services) -> Callable[[], int]:
    """Run every queued job in this process, as a worker would, until none is left; return how many ran."""
    from server.jobs.runner import run_job

    def run_all() -> int:
        count = 0
        while True:
            with services.db.session() as session:
                ids = session.scalars(select(Job.id).where(Job.state == "queued").order_by(Job.id)).all()
            if not ids:
                return count
            for job_id in ids:
                run_job(services, job_id)
                count += 1

    return run_all


@pytest.fixture
def live_server(app, services):
    """The app served by a real threaded WSGI server on the instance's port, for real HTTP clients."""
    import threading

    from werkzeug.serving import make_server

    port = services.settings.port
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    thread.join()


PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def pg_url():
    """A new, empty PostgreSQL database on the machine's server, dropped after the test."""
    import uuid

    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"lc_test_{worker_id()}_{uuid.uuid4().hex[:8]}"  # the worker id tells whose database a leftover is
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # PostgreSQL on 127.0.0.1:5432 is part of the test environment
        pytest.fail(f"these tests need PostgreSQL at {PG_ADMIN}: {exc}")
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def broker(services):
    """A real Mosquitto on free ports with lessoncast's generated config; yields the services."""
    import socket
    import subprocess
    import time

    from server.messaging.broker import mosquitto_executable, write_config

    conf = write_config(services)
    log = open(services.data / "broker" / "mosquitto.log", "wb")
    proc = subprocess.Popen([mosquitto_executable(services), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30  # seconds on a loaded machine; milliseconds on an idle one
    while True:
        try:
            socket.create_connection(("127.0.0.1", services.settings.mqtt_server_port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError("mosquitto did not start: " + (services.data / "broker" / "mosquitto.log")
                                     .read_text(errors="replace"))
            time.sleep(0.05)
    yield services
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


@pytest.fixture
def enrolled(services):
    """Add and enrol a device through the service layer: enrolled('radio', name=..., site=...) -> enrolment answer."""
    from server.devices import enrolment, registry as devices

    def make(kind: str = "radio", **fields) -> dict:
        with services.db.session() as session:
            new = devices.add(services, session, kind=kind, name=fields.pop("name", f"test {kind}"),
                              site_code=fields.pop("site", None), actor="test", **fields)
        return enrolment.enrol(services, new.code)

    return make


@pytest.fixture
def ready_lesson(services, drain, tmp_path) -> Callable[..., int]:
    """Ingest a short generated talk and run its jobs with real ffmpeg: ready_lesson('第一课', seconds=2) -> id."""
    from server.lessons import service as lessons
    from tests.generated_media import speech_like

    def make(title: str, seconds: float = 2.0, language: str = "cmn") -> int:
        audio = speech_like(tmp_path / f"{title}-{seconds}.wav", seconds=seconds)
        lesson, _ = lessons.ingest(services, stage_file(services, audio), audio.name,
                                   lessons.LessonMeta(title=title, language=language), "test")
        drain()
        return lesson.id

    return make


SITES_CSV = ("township_code,township_name,site_code,site_name\n"
             "qs,青山镇,qs-01,东村\nqs,青山镇,qs-02,西村\nhw,海湾镇,hw-01,渔港村\n").encode()


@pytest.fixture
def org(services):
    """Two townships and three sites, with their township and village groups, plus a special group."""
    from server.org import service as org_mod

    org_mod.import_sites(services, SITES_CSV, "test")
    org_mod.import_groups(services, "key,name,kind\nsea-branch,海上支部,special\n".encode(), "test")
    return services
