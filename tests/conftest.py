"""Shared fixtures: a fresh instance (data directory, migrated SQLite) per test, its app, tokens and job runner."""

from __future__ import annotations

import contextlib
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

# Lists the fault scenarios' event accounts at the end of the run (tests/e2e/faults/).
pytest_plugins = ["tests.e2e.faults.plugin"]


@pytest.fixture(autouse=True, scope="session")
def _own_instance_record(tmp_path_factory):
    """Keep `lessoncast init`/`run` from recording test instances in the real ~/.config, and the default data
    directory out of the real ~/.local/share: each test session (each xdist worker) has its own."""
    import os

    home = tmp_path_factory.mktemp("xdg")
    saved = {name: os.environ.get(name) for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME")}
    os.environ["XDG_CONFIG_HOME"], os.environ["XDG_DATA_HOME"] = str(home / "config"), str(home / "share")
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def _no_setting_leaks():
    """A test that leaves a LESSONCAST_* variable changed in this process would point the next test's in-process
    commands (CliRunner) at its instance: each test must leave them as it found them."""
    import os

    before = {k: v for k, v in os.environ.items() if k.startswith("LESSONCAST_")}
    yield
    after = {k: v for k, v in os.environ.items() if k.startswith("LESSONCAST_")}
    assert after == before, f"this test left LESSONCAST_* variables changed: {before} -> {after}"


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


def _work_unit(nodeid: str) -> str:
    """The unit a worker takes whole: a test file, or a folder of SHARED_SESSION_FOLDERS."""
    path = nodeid.split("::", 1)[0]
    return next((folder for folder in SHARED_SESSION_FOLDERS if path.startswith(folder)), path)


def pytest_collection_modifyitems(config, items):
    """Hand out the files marked `long_running` first, longest first, then the others with the most tests first.

    xdist's own order (most tests first) put the few-test files that take minutes (the million-event rebuild, the
    packaging builds) last, and the run then waited on one worker while the others were idle."""
    units: dict[str, list] = {}
    for item in items:
        units.setdefault(_work_unit(item.nodeid), []).append(item)

    def seconds(unit: list) -> float:
        marks = [i.get_closest_marker("long_running") for i in unit]
        return max((m.args[0] for m in marks if m is not None), default=0.0)

    ordered = sorted(units.values(), key=lambda unit: (-seconds(unit), -len(unit)))
    items[:] = [item for unit in ordered for item in unit]


def pytest_xdist_make_scheduler(config, log):
    """--dist loadfile, with each folder of SHARED_SESSION_FOLDERS as one unit, in the order of
    pytest_collection_modifyitems."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    config.option.loadscopereorder = False

    class LoadFileOrFolder(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _work_unit(nodeid)

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


DATABASES = ("sqlite", "postgresql")


def pytest_configure(config):
    config.addinivalue_line("markers", "long_running(seconds): the file takes about SECONDS of a worker on a quiet "
                                       "machine; the longest are handed out first, so none becomes the run's tail")
    config.addinivalue_line("markers", "databases: run each test of the module on SQLite and on PostgreSQL (the "
                                       "`database_url` fixture is parametrized)")


def pytest_generate_tests(metafunc):
    """A test marked `databases` that uses the instance runs once per database: test_x[sqlite], test_x[postgresql]."""
    if "database_url" in metafunc.fixturenames and metafunc.definition.get_closest_marker("databases"):
        metafunc.parametrize("database_url", DATABASES, indirect=True)


class PostgresDatabases:
    """The PostgreSQL database of one test process: made and migrated on first use, then emptied (TRUNCATE ...
    RESTART IDENTITY) before each test that uses it, and dropped when the process ends. Its name carries the xdist
    worker and the process id, so parallel workers and other test runs on the same server never share one.

    Emptying was measured against a CREATE DATABASE ... TEMPLATE copy per test (and DROP ... WITH (FORCE) after):
    0.7-1.7 s against 0.2-2.8 s plus 1.2-2.8 s, on the busy 2-core machine; migrating from nothing takes 5 s."""

    def __init__(self):
        import os

        self.name = f"lc_test_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.name}"
        self._admin = None
        self._tables: list[str] = []

    def _execute(self, sql: str, in_own_database: bool = False) -> list:
        """Run SQL on the server's postgres database (or, IN_OWN_DATABASE, on this process's); its rows, if any."""
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        if self._admin is None:
            self._admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        engine = create_engine(self.url, poolclass=NullPool) if in_own_database else self._admin
        try:
            with engine.begin() as conn:
                result = conn.execute(text(sql))
                return result.all() if result.returns_rows else []
        finally:
            if in_own_database:
                engine.dispose()

    def _make(self) -> None:
        from server import migrate

        try:
            self._drop_orphans()
            self._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self._execute(f'CREATE DATABASE "{self.name}"')
        except Exception as exc:  # PostgreSQL on 127.0.0.1:5432 is part of the test environment
            pytest.fail(f"these tests need PostgreSQL at {PG_ADMIN}: {exc}")
        # A migration that moves card tokens needs a key; an empty database has none to move.
        migrate.upgrade(self.url, card_key=b"\0" * 32)
        self._tables = [row[0] for row in self._execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version' "
            "ORDER BY tablename", in_own_database=True)]

    def _drop_orphans(self) -> None:
        """Drop the databases of test processes on this machine that were killed before they could drop their own
        (the process id in the name is no longer running)."""
        import os
        import re

        for (name,) in self._execute("SELECT datname FROM pg_database WHERE datname LIKE 'lc\\_test\\_%'"):
            match = re.fullmatch(r"lc_test_(?:main|gw\d+)_(\d+)", name)
            if match is None:
                continue
            try:
                os.kill(int(match[1]), 0)
            except ProcessLookupError:
                self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except PermissionError:  # another user's process: alive
                pass

    def fresh(self) -> str:
        """The URL of this process's database, migrated to the head revision and empty."""
        if not self._tables:
            self._make()
            return self.url
        # Connections an earlier test left (a server thread, a child process) would hold TRUNCATE back.
        self._execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      f"WHERE datname = '{self.name}' AND pid <> pg_backend_pid()")
        self._execute("TRUNCATE " + ", ".join(f'"{t}"' for t in self._tables) + " RESTART IDENTITY CASCADE",
                      in_own_database=True)
        return self.url

    def close(self) -> None:
        if self._tables:
            self._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        if self._admin is not None:
            self._admin.dispose()


@pytest.fixture(scope="session")
def postgres_databases():
    """This test process's PostgreSQL database (see PostgresDatabases)."""
    databases = PostgresDatabases()
    yield databases
    databases.close()


@pytest.fixture
def database_url(request, postgres_databases):
    """The instance's database: "" (SQLite in the data directory) unless the test runs on PostgreSQL, then the URL
    of this test process's migrated database, emptied for the test. Modules marked `databases` run on both."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return ""
    return postgres_databases.fresh()


@pytest.fixture
def services(tmp_path, database_url) -> Services:
    """A fresh, initialised instance on a temporary database: SQLite, or PostgreSQL in modules marked `databases`."""
    # The web port is chosen here, so the URLs the server hands out (enrolment answers) reach `live_server`.
    svc = make_services(tmp_path / "data", port=free_port(), mqtt_port=free_port(), mqtt_server_port=free_port(),
                        database_url=database_url)
    yield svc
    svc.db.dispose()


def cli_env(services: Services) -> dict[str, str]:
    """The environment a `lessoncast` command needs to reach the instance SERVICES: its data directory, database and
    ports."""
    st = services.settings
    env = {"LESSONCAST_DATA_DIR": str(services.data), "LESSONCAST_PORT": str(st.port),
           "LESSONCAST_MQTT_PORT": str(st.mqtt_port), "LESSONCAST_MQTT_SERVER_PORT": str(st.mqtt_server_port)}
    # Always spelled out (SQLite too), so a command run in this process reaches this instance's database whatever
    # the process's own environment holds.
    env["LESSONCAST_DATABASE_URL"] = st.db_url
    return env


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


@contextlib.contextmanager
def new_pg_database(prefix: str = "lc_test"):
    """A new, empty PostgreSQL database on the machine's server (named PREFIX_<worker>_<random>, so a leftover tells
    whose it is), dropped on exit; yields its URL."""
    import uuid

    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{worker_id()}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # PostgreSQL on 127.0.0.1:5432 is part of the test environment
        pytest.fail(f"these tests need PostgreSQL at {PG_ADMIN}: {exc}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_url():
    """A new, empty PostgreSQL database on the machine's server, dropped after the test."""
    with new_pg_database() as url:
        yield url


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
