"""Benchmark: the device agent's memory and idle CPU on simulated hardware, against the targets for a Pi-class radio.

In one run it starts a whole lessoncast stack (`lessoncast run`) on free ports in a temporary directory, uploads a
one-minute lesson, publishes it, enrols an agent and then measures `lessoncast agent run --hal sim`:
  1. a sync and one hour of playback on a 60x clock (a play-now command every simulated minute);
  2. the same agent restarted at real speed, idle for 60 s.
It reports peak RSS (VmHWM) over both phases and the CPU used while idle, and as references in the same run: the
targets (45 MB, 1% of a core) and a bare Python process that only imports what the agent imports.

    .venv/bin/python bench/agent_footprint.py
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TARGET_RSS_MB, TARGET_IDLE_CPU = 45.0, 1.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (requests.RequestException, OSError, KeyError, ValueError):
            value = None
        if value:
            return value
        time.sleep(0.3)
    raise SystemExit(f"timed out waiting for {what}")


def proc_stat(pid: int) -> tuple[float, float]:
    """(peak RSS in MB, CPU seconds used) of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return hwm, cpu


def baseline_rss() -> float:
    """Peak RSS of a Python that imports what the agent imports and does nothing."""
    code = ("import paho.mqtt.client, tuf.ngclient, urllib3, sqlite3, json, zoneinfo, click\n"
            "import playlists.manifest, playlists.trust\n"
            "import sys; sys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
    proc.stdout.readline()
    rss, _ = proc_stat(proc.pid)
    proc.stdin.close()
    proc.wait()
    return rss


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="lc-footprint-"))
    web, mqtt, mqtt_server = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LESSONCAST_")}
    env.update({"LESSONCAST_DATA_DIR": str(work / "server"), "LESSONCAST_PORT": str(web),
                "LESSONCAST_MQTT_PORT": str(mqtt), "LESSONCAST_MQTT_SERVER_PORT": str(mqtt_server),
                "LESSONCAST_LOG_LEVEL": "WARNING"})
    base = f"http://127.0.0.1:{web}"
    lc = str(BIN / "lessoncast")
    stack = subprocess.Popen([lc, "run"], env=env, stdout=open(work / "stack.log", "wb"), stderr=subprocess.STDOUT,
                             start_new_session=True)
    agent = None
    try:
        wait(lambda: requests.get(f"{base}/healthz", timeout=2).json()["ok"], 60, "the stack")
        token = subprocess.run([lc, "token", "create", "--role", "admin", "--name", "bench"], env=env,
                               capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        auth = {"Authorization": f"Bearer {token}"}
        wav = work / "lesson.wav"
        subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i",
                        "anoisesrc=color=pink:duration=60:sample_rate=44100:seed=3", "-af", "volume=0.3", str(wav)],
                       check=True)
        with open(wav, "rb") as handle:
            lesson = requests.post(f"{base}/api/v1/lessons", headers=auth, files={"file": handle},
                                   data={"title": "第一课"}, timeout=60).json()["id"]
        wait(lambda: requests.get(f"{base}/api/v1/lessons/{lesson}", headers=auth).json()["state"] == "ready", 120,
             "the renditions")
        device = requests.post(f"{base}/api/v1/devices", headers=auth, json={"kind": "radio", "name": "基准"}).json()
        requests.patch(f"{base}/api/v1/devices/{device['id']}", headers=auth,
                       json={"settings": {"download_window": None}}).raise_for_status()
        agent_dir = work / "agent"
        subprocess.run([lc, "agent", "enrol", "--server", base, "--code", device["enrol_code"], "--data",
                        str(agent_dir)], env=env, check=True, capture_output=True)
        programme = requests.post(f"{base}/api/v1/programmes", headers=auth, json={
            "code": "bench", "title": "基准", "valid_from": "2026-01-01", "valid_until": "2027-12-31",
            "items": [{"lesson": lesson}]}).json()["id"]
        requests.post(f"{base}/api/v1/programmes/{programme}/publish", headers=auth).raise_for_status()

        agent_env = dict(env, LESSONCAST_AGENT_DIR=str(agent_dir))
        agent = subprocess.Popen([lc, "agent", "run", "--hal", "sim", "--speed", "60"], env=agent_env,
                                 stdout=open(work / "agent.log", "wb"), stderr=subprocess.STDOUT)
        wait(lambda: (agent_dir / "manifest.json").exists(), 60, "the agent's first sync")
        from playlists import topics
        from server import settings as settings_mod
        from server.messaging.mqtt_link import BrokerAddress, ServerLink
        from server.services import Services

        services = Services(settings_mod.load(environ=env))
        link = ServerLink(BrokerAddress.from_services(services), "bench").connect()
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < 60:  # one simulated hour: a lesson every simulated minute
            command = {"id": f"bench-{n}", "type": "play-now", "programme": "bench", "position": 1,
                       "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            link.publish(topics.cmd(device["id"]), json.dumps(command).encode(), expiry_s=3600)
            n += 1
            time.sleep(1.0)
        link.close()
        peak_play, _ = proc_stat(agent.pid)
        agent.terminate()
        agent.wait(timeout=30)

        agent = subprocess.Popen([lc, "agent", "run", "--hal", "sim", "--speed", "1"], env=agent_env,
                                 stdout=open(work / "agent-idle.log", "ab"), stderr=subprocess.STDOUT)
        time.sleep(15)  # settle: connect, status, the start-up refresh
        _, cpu0 = proc_stat(agent.pid)
        time.sleep(60)
        peak_idle, cpu1 = proc_stat(agent.pid)
        idle_cpu = (cpu1 - cpu0) / 60 * 100
        from sqlalchemy import func, select

        from server.events.models import DeviceEvent

        with services.db.session() as session:  # the plays the server received: the hour really was played
            plays = session.scalar(select(func.count()).select_from(DeviceEvent)
                                   .where(DeviceEvent.device_uid == device["id"], DeviceEvent.type == "play"))
    finally:
        if agent is not None and agent.poll() is None:
            agent.terminate()
            agent.wait(timeout=30)
        os.killpg(stack.pid, 2)
        stack.wait(timeout=60)
    peak_rss = max(peak_play, peak_idle)
    base_rss = baseline_rss()
    rows = [("peak RSS (MB)", peak_rss, TARGET_RSS_MB), ("idle CPU (% of a core)", idle_cpu, TARGET_IDLE_CPU),
            ("peak RSS vs bare Python with the agent's imports (MB)", peak_rss, base_rss)]
    print(f"{'figure':<55}{'agent':>10}{'reference':>12}{'ratio':>8}")
    for name, value, ref in rows:
        print(f"{name:<55}{value:>10.2f}{ref:>12.2f}{value / ref:>8.2f}")
    print(f"play-now commands sent during the simulated hour: {n}; play events stored by the server: {plays}")
    print(json.dumps({"peak_rss_mb": round(peak_rss, 1), "idle_cpu_percent": round(idle_cpu, 2),
                      "baseline_rss_mb": round(base_rss, 1), "rss_ratio_to_target": round(peak_rss / TARGET_RSS_MB, 3),
                      "idle_cpu_ratio_to_target": round(idle_cpu / TARGET_IDLE_CPU, 3),
                      "play_commands": n, "play_events_stored": plays}))


if __name__ == "__main__":
    main()
