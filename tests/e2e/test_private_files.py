"""The data directory and what lessoncast's processes write in it are private, and one-time secrets never reach a
log: real ``lessoncast`` processes on a fresh data directory."""

from __future__ import annotations

import os
import pty
import re
import stat
import subprocess

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from server.accounts.auth import verify_password
from server.accounts.models import User
from tests.e2e.stack import VENV_BIN, stack_env, start, stop, wait_for


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _admin(data) -> User:
    engine = create_engine(f"sqlite:///{data / 'lessoncast.db'}")
    with Session(engine) as session:
        user = session.scalar(select(User).where(User.username == "admin"))
    engine.dispose()
    return user


def test_init_without_a_terminal_keeps_secrets_out_of_the_log_and_makes_the_data_private(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    (data / "lessoncast.db").touch(mode=0o644)  # as an older version left it
    os.chmod(data / "lessoncast.db", 0o644)
    done = subprocess.run([str(VENV_BIN / "lessoncast"), "init"], env=stack_env(data), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    log = done.stdout + done.stderr
    secrets_file = data / "one-time-secrets.txt"
    assert str(secrets_file) in log
    written = secrets_file.read_text()
    password = re.search(r"password: (\S+)", written).group(1)
    passphrase = re.search(r"passphrase: (\S+)", written).group(1)
    assert password not in log and passphrase not in log, "no one-time secret in the output a log file keeps"
    assert verify_password(_admin(data), password)
    assert _mode(secrets_file) == 0o600
    assert _mode(data) == 0o700
    for name in ("lessoncast.db", "secret_key"):
        assert _mode(data / name) == 0o600, name


def test_init_on_a_terminal_shows_the_secrets_there_and_writes_no_file(tmp_path):
    data = tmp_path / "data"
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([str(VENV_BIN / "lessoncast"), "init"], env=stack_env(data), stdin=terminal,
                            stdout=terminal, stderr=terminal)
    os.close(terminal)
    out = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(timeout=300) == 0
    os.close(controller)
    password = re.search(rb"password: (\S+)", out).group(1).decode()
    assert verify_password(_admin(data), re.sub(r"\x1b\[[0-9;]*m", "", password))
    assert not (data / "one-time-secrets.txt").exists()


def test_the_database_wal_and_job_queue_files_are_private(tmp_path):
    data = tmp_path / "data"
    env = stack_env(data)
    subprocess.run([str(VENV_BIN / "lessoncast"), "init"], env=env, capture_output=True, timeout=300, check=True)
    log = tmp_path / "worker.log"
    worker = start(["worker"], env, log)
    try:
        wanted = [data / "queue.db", data / "lessoncast.db-wal", data / "lessoncast.db-shm"]
        wait_for(lambda: all(p.exists() for p in wanted), 60, "the worker's queue and the database's WAL", log)
        assert {p.name: oct(_mode(p)) for p in wanted} == {p.name: oct(0o600) for p in wanted}
        assert all(_mode(p) & 0o077 == 0 for p in data.glob("queue.db*"))
    finally:
        stop(worker)
