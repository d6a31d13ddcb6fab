"""The whole stack as a user starts it: `lessoncast run`, an upload with HTTP, renditions, a clean Ctrl-C."""

import signal
import socket
import subprocess
from pathlib import Path

import requests

from tests.e2e.stack import get_json, stack_env, start, stop, wait_for
from tests.generated_media import speech_like


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_run_upload_and_stop(tmp_path):
    env = stack_env(tmp_path / "data")
    base = f"http://127.0.0.1:{env['LESSONCAST_PORT']}"
    log = tmp_path / "run.log"
    proc = start(["run"], env, log)
    try:
        status, health = wait_for(lambda: (s := get_json(f"{base}/healthz"))[0] == 200 and s, 60,
                                  "a healthy stack", log)
        assert health["ok"] and all(health[p]["up"] for p in ("web", "worker", "ingest", "broker", "database"))
        # No terminal here: the first admin's password goes to a private file, and the log only names it.
        secrets_file = tmp_path / "data" / "one-time-secrets.txt"
        assert "password:" in secrets_file.read_text() and str(secrets_file) in log.read_text()
        assert "password:" not in log.read_text(), "a log never holds a one-time secret"

        token = subprocess.run([env["PATH"].split(":")[0] + "/lessoncast", "token", "create", "--role", "media",
                                "--name", "curl"], env=env, capture_output=True, text=True, check=True
                               ).stdout.strip().splitlines()[-1]
        audio = speech_like(tmp_path / "讲话.wav", seconds=4)
        with open(audio, "rb") as fh:
            created = requests.post(f"{base}/api/v1/lessons", headers={"Authorization": f"Bearer {token}"},
                                    data={"title": "冬训 第一讲"}, files={"file": (audio.name, fh)}, timeout=30)
        assert created.status_code == 201, created.text
        lesson_id = created.json()["id"]

        def ready():
            _, lesson = get_json(f"{base}/api/v1/lessons/{lesson_id}", headers={"Authorization": f"Bearer {token}"})
            return lesson if lesson and lesson["state"] in ("ready", "failed", "rejected") else None

        lesson = wait_for(ready, 120, "renditions", log)
        assert lesson["state"] == "ready", lesson
        for rendition in lesson["renditions"]:
            assert requests.get(base + rendition["url"], timeout=10).status_code == 200
    finally:
        code = stop(proc, signal.SIGINT)
    assert code == 0, log.read_text()[-3000:]
    for port in (env["LESSONCAST_PORT"], env["LESSONCAST_MQTT_PORT"]):
        assert not _port_open(int(port)), f"port {port} still open after Ctrl-C"
    assert not _processes_with(f"LESSONCAST_DATA_DIR={tmp_path / 'data'}"), "processes left running after Ctrl-C"


def _processes_with(env_entry: str) -> list[int]:
    """Pids of processes whose environment holds ENV_ENTRY (every child of one stack has its data dir)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if env_entry.encode() in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_healthz_names_what_is_down(tmp_path):
    env = stack_env(tmp_path / "data")
    base = f"http://127.0.0.1:{env['LESSONCAST_PORT']}"
    log = tmp_path / "web.log"
    subprocess.run([env["PATH"].split(":")[0] + "/lessoncast", "init"], env=env, check=True, capture_output=True)
    proc = start(["web"], env, log)
    try:
        status, health = wait_for(lambda: get_json(f"{base}/healthz")[0] and get_json(f"{base}/healthz"), 30,
                                  "the web server", log)
        assert status == 503
        assert set(health["down"]) == {"worker", "broker", "ingest"}
        assert "no worker has ever started" in health["worker"]["error"]
    finally:
        stop(proc, signal.SIGTERM)
