"""`lessoncast run` as a process: its children die with it (SIGKILL, SIGHUP), a second stack on the same ports or
instance refuses clearly and harms nothing, a port another program holds is named with its holder."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
from pathlib import Path

from tests.e2e.stack import VENV_BIN, get_json, stack_env, start, stop, wait_for

LANG_EN = {"LANG": "en_US.UTF-8", "LC_ALL": "", "LC_MESSAGES": ""}


def _port_outside_the_ephemeral_range() -> int:
    """A free port the kernel never hands out by itself: the stack here stops and starts again on the same ports,
    and in between another test's connection or free_port() must not take one (they all draw ephemeral ports)."""
    low, _high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    while True:
        port = random.randrange(max(1024, low - 12000), low)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


def _restartable_env(data: Path) -> dict[str, str]:
    env = stack_env(data)
    for name in ("PORT", "WEB_BACKEND_PORT", "MQTT_PORT", "MQTT_SERVER_PORT"):
        env[f"LESSONCAST_{name}"] = str(_port_outside_the_ephemeral_range())
    return env


def _descendants(pid: int) -> dict[int, str]:
    """Every process under PID, each with its start time (so a recycled pid is not taken for a survivor)."""
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found and (start := _start_time(child)):
                    found[child] = start
                    todo.append(child)
    return found


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _survivors(processes: dict[int, str]) -> dict[int, str]:
    alive = {}
    for pid, started in processes.items():
        if _start_time(pid) == started:
            try:
                alive[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
    return alive


def _healthy(base: str, log: Path):
    return wait_for(lambda: (s := get_json(f"{base}/healthz"))[0] == 200 and s[1], 90, "a healthy stack", log)


def _all_started(proc: subprocess.Popen, log: Path, count: int = 7) -> dict[int, str]:
    """Wait until the supervisor's children (broker, worker, 2 ingest, web, nginx) and their workers exist."""
    return wait_for(lambda: (d := _descendants(proc.pid)) and len(d) >= count and d, 60, "the stack's processes", log)


def _run_once(env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "lessoncast"), "run"], env={**env, **LANG_EN}, capture_output=True,
                          text=True, timeout=timeout)


def _invoke(args: list[str], env: dict[str, str]):
    """`lessoncast ARGS` in this process (a refusal needs no new interpreter): (exit code, output)."""
    from click.testing import CliRunner

    from lessoncast.cli import main

    result = CliRunner().invoke(main, args, env={**env, **LANG_EN})
    return result.exit_code, result.output


def test_children_die_with_the_supervisor_and_a_second_stack_refuses(tmp_path):
    env = _restartable_env(tmp_path / "data")
    base = f"http://127.0.0.1:{env['LESSONCAST_PORT']}"
    log = tmp_path / "run.log"
    proc = start(["run"], env, log)
    try:
        _healthy(base, log)
        # Another instance on the same ports: refused before it starts anything, naming port and setting.
        code, said = _invoke(["run"], {**env, "LESSONCAST_DATA_DIR": str(tmp_path / "other")})
        assert code != 0
        assert f"Port {env['LESSONCAST_PORT']}" in said and "LESSONCAST_PORT" in said, said
        assert f"Port {env['LESSONCAST_MQTT_PORT']}" in said and "LESSONCAST_MQTT_PORT" in said
        assert "lessoncast is running" not in said
        # The same instance twice: the run lock names the supervisor that holds it.
        code, said = _invoke(["run"], env)
        assert code != 0 and "already running" in said and str(proc.pid) in said, said
        assert get_json(f"{base}/healthz")[0] == 200, "the first stack is unharmed"
        code, said = _invoke(["doctor", "--json"], env)
        report = json.loads(said)
        assert code == 0 and report["ok"], said
        statuses = {c["check"]: c["status"] for c in report["checks"]}
        assert statuses["ports"] == statuses["broker-auth"] == statuses["broker-acl"] == "ok", report
        started = _all_started(proc, log)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        wait_for(lambda: not _survivors(started), 30, f"the children to die: {_survivors(started)}", log)
    finally:
        if proc.poll() is None:
            proc.kill()
    # A restart finds nothing it did not start, and comes up; SIGHUP (a closed terminal) stops it cleanly.
    restarted = start(["run"], env, log)
    try:
        _healthy(base, log)
        started = _all_started(restarted, log)
        assert stop(restarted, signal.SIGHUP) == 0
        wait_for(lambda: not _survivors(started), 30, f"the children to stop: {_survivors(started)}", log)
    finally:
        if restarted.poll() is None:
            restarted.kill()
    text = log.read_text()
    assert "received SIGHUP; stopping" in text
    assert not re.search(r'"GET /healthz HTTP/1.1" \d{3}', text), "no access log unless LESSONCAST_ACCESS_LOG asks"
    assert "setup plugin" not in text, "no Alembic chatter"


def test_ports_another_program_holds_are_named_with_their_holder_and_setting(tmp_path):
    from server import settings as settings_mod

    settings = settings_mod.load(environ={"LESSONCAST_DATA_DIR": str(tmp_path), "LESSONCAST_MQTT_PORT": "2884"})
    assert settings.mqtt_server_port == 2885, "one setting moves both broker listeners"
    env = stack_env(tmp_path / "data")
    del env["LESSONCAST_MQTT_SERVER_PORT"]  # it follows LESSONCAST_MQTT_PORT
    with socket.socket() as web_holder, socket.socket() as broker_holder:
        for holder in (web_holder, broker_holder):
            holder.bind(("127.0.0.1", 0))
            holder.listen()
        web, server = web_holder.getsockname()[1], broker_holder.getsockname()[1]
        refused = _run_once({**env, "LESSONCAST_PORT": str(web), "LESSONCAST_MQTT_PORT": str(server - 1)})
    assert refused.returncode != 0
    lines = refused.stderr.splitlines()
    web_line = next(line for line in lines if f"Port {web} " in line)
    assert "LESSONCAST_PORT" in web_line and f"pid {os.getpid()}" in web_line, refused.stderr
    server_line = next(line for line in lines if f"Port {server} " in line)
    assert "LESSONCAST_MQTT_SERVER_PORT" in server_line and "LESSONCAST_MQTT_PORT + 1" in server_line
    assert f"pid {os.getpid()}" in server_line
    assert "lessoncast is running" not in refused.stderr
    assert not (tmp_path / "data" / "lessoncast.db").exists(), "nothing was set up for a stack that cannot start"
