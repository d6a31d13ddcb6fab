"""Benchmark: how fast a new programme reaches a fleet, and how many bytes each device pays for it.

In one run:

1. A whole stack as a county runs it (``lessoncast run``: Mosquitto, nginx and gunicorn, the worker, two ingest
   processes) on a fresh data directory and free ports; 20 sites, lessons transcoded by the worker, and a first
   programme published.
2. The largest fleet's radios are added (no download window) and enrolled over HTTP as devices do.
3. For each N (500, 1,000, 2,000 by default): the fleet simulator runs the first N devices (the agent's own sync,
   TUF verification and delivery code, one event loop, a pool of sync threads). Once every one of them holds the
   current manifest, one more lesson is added to the programme and published; the clock starts at publish.
   The run records when each device has verified the new manifest (p50, p95, p100 of those times), and the media
   bytes each device downloaded against the minimum possible (the new lesson's rendition, once).

    .venv/bin/python bench/fanout.py                       # N = 500, 1000, 2000
    .venv/bin/python bench/fanout.py --sizes 50,100        # a quick look

Prints a table, then one line of JSON keyed by N: verified, p50_s, p95_s, p100_s, bytes_ratio (downloaded / minimum).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from sqlalchemy import select  # noqa: E402

from device_agent.fleet import enrolment, simulator  # noqa: E402
from device_agent.fleet.mux import Mux  # noqa: E402
from playlists.manifest import media_of, parse_manifest  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.generated_media import speech_like  # noqa: E402

VENV_BIN = Path(sys.executable).parent
SITES = 20


def start_stack(data: Path, log: Path) -> tuple[subprocess.Popen, dict]:
    """`lessoncast run` on DATA with free ports; its environment (also set in this process)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LESSONCAST_")}
    env.update({"LESSONCAST_DATA_DIR": str(data), "LESSONCAST_PORT": str(free_port()),
                "LESSONCAST_MQTT_PORT": str(free_port()), "LESSONCAST_MQTT_SERVER_PORT": str(free_port()),
                "LESSONCAST_WEB_BACKEND_PORT": str(free_port()), "PATH": f"{VENV_BIN}:{env.get('PATH', '')}"})
    os.environ.update({k: v for k, v in env.items() if k.startswith("LESSONCAST_")})
    proc = subprocess.Popen([str(VENV_BIN / "lessoncast"), "run"], env=env, stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{env['LESSONCAST_PORT']}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(base + "/healthz", timeout=5).status_code == 200:
                return proc, env
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the stack did not become healthy; see {log}")


def county(services, lessons_dir: Path, count: int) -> list[int]:
    """Sites, COUNT lessons transcoded by the stack's worker, and a first programme of the first lesson."""
    from server.demo import county as demo
    from server.lessons import service as lessons
    from server.lessons.upload_stream import HashingFile
    from server.org import service as org

    sites = "township_code,township_name,site_code,site_name\n" + "".join(
        f"t{n % 3},镇{n % 3},s-{n:02d},村{n}\n" for n in range(SITES))
    org.import_sites(services, sites.encode(), "bench")
    ids = []
    for n in range(count):
        wav = speech_like(lessons_dir / f"lesson-{n}.wav", seconds=20.0 + n)
        staged = HashingFile(services.upload_dir)
        staged.write(wav.read_bytes())
        staged.close_file()
        meta = lessons.parse_meta({"title": f"第{n + 1}课", "language": "cmn"})
        lesson, _ = lessons.ingest(services, lessons.StagedFile(staged.path, staged.sha256, staged.size), wav.name,
                                   meta, "bench")
        ids.append(lesson.id)
    demo.wait_ready(services, ids)
    return ids


def publish_items(services, lesson_ids: list[int]) -> None:
    """Publish programme BENCH with LESSON_IDS (a new version when it exists)."""
    from server.programmes import publish, service as programmes
    from server.programmes.models import Programme

    with services.db.session() as session:
        exists = session.scalar(select(Programme.id).where(Programme.code == "BENCH"))
    items = [{"lesson": lid} for lid in lesson_ids]
    if exists is None:
        pid = programmes.create(services, {"code": "BENCH", "title": "基准", "valid_from": "2026-01-01",
                                           "valid_until": "2027-12-31", "items": items}, "bench")
    else:
        pid = programmes.new_version(services, "BENCH", "bench")
        programmes.update(services, pid, {"items": items}, "bench")
    publish.publish(services, pid, "bench")


def add_radios(services, count: int) -> list[tuple[str, str]]:
    """COUNT radios over the sites, with no download window; their (id, code)."""
    from server.devices import registry as devices

    out = []
    for n in range(count):
        with services.db.session() as session:
            new = devices.add(services, session, kind="radio", name=f"bench radio {n}", site_code=f"s-{n % SITES:02d}",
                              actor="bench")
        devices.update(services, new.uid, {"settings": {"download_window": None}}, "bench")
        out.append((new.uid, new.code))
    return out


def percentile(values: list[float], share: float) -> float:
    """The smallest value at or below which SHARE of VALUES lie."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(-(-share * len(ordered) // 1)) - 1))]


def round_for(services, stores, lesson_ids: list[int], threads: int, timeout: float) -> dict:
    """Run STORES, wait until all hold the current manifest, publish LESSON_IDS, time every device's switch."""
    mux = Mux(speed=1.0, sync_threads=threads, spread_s=10.0)
    fleet = simulator.build(mux, stores, behave=False)
    thread = threading.Thread(target=mux.run, name="fleet", daemon=True)
    thread.start()
    try:
        current = None
        deadline = time.monotonic() + timeout
        while True:  # every device on the programme now published, whatever it held before
            versions = {d.agent.manifest.version if d.agent.manifest else None for d in fleet}
            synced = all(d.agent.sync_state != "checking" for d in fleet)
            if len(versions) == 1 and None not in versions and synced:
                current = versions.pop()
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the fleet did not settle on one manifest: {sorted(map(str, versions))}")
            time.sleep(0.5)
        old = {d.uid: d.agent.manifest for d in fleet}
        before = {d.uid: d.agent.syncer.fetcher.bytes_received for d in fleet}
        began, loop_before = time.monotonic(), mux.loop_seconds
        publish_items(services, lesson_ids)
        done: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while len(done) < len(fleet) and time.monotonic() < deadline:
            now = time.monotonic()
            for d in fleet:
                if d.uid not in done and d.agent.manifest and d.agent.manifest.version > current:
                    done[d.uid] = now - began
            time.sleep(0.1)
        downloaded = minimum = 0
        for d in fleet:
            if d.uid not in done:
                continue
            new_files, old_files = media_of(d.agent.manifest), media_of(old[d.uid])
            minimum += sum(item.length for sha, item in new_files.items() if sha not in old_files)
            downloaded += d.agent.syncer.fetcher.bytes_received - before[d.uid]
        times = list(done.values()) or [float("nan")]
        return {"verified": len(done), "devices": len(fleet), "p50_s": round(percentile(times, 0.5), 1),
                "p95_s": round(percentile(times, 0.95), 1), "p100_s": round(max(times), 1),
                "bytes_ratio": round(downloaded / minimum, 3) if minimum else None,
                "downloaded_bytes": downloaded, "minimum_bytes": minimum,
                "loop_busy_share": round((mux.loop_seconds - loop_before) / max(1e-9, time.monotonic() - began), 2)}
    finally:
        mux.stop_event.set()
        thread.join(timeout=30)
        mux.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="500,1000,2000", help="fleet sizes, comma-separated")
    parser.add_argument("--sync-threads", type=int, default=8, help="downloads running at once in the simulator")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for each round")
    parser.add_argument("--keep", type=Path, default=None, help="keep the instance and the fleet here")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="lc-fanout-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    proc, env = start_stack(work / "data", work / "run.log")
    try:
        from server import settings as settings_mod
        from server.services import Services

        services = Services(settings_mod.load())
        lessons = county(services, work, len(sizes) + 1)
        publish_items(services, lessons[:1])
        began = time.monotonic()
        codes = add_radios(services, max(sizes))
        stores = enrolment.enrol_all(work / "fleet", f"http://127.0.0.1:{env['LESSONCAST_PORT']}", codes,
                                     threads=16)
        print(f"added and enrolled {len(stores)} radios in {time.monotonic() - began:.0f} s", flush=True)
        ordered = [stores[uid] for uid, _code in codes]
        results = {}
        print(f"{'N':>6} {'verified':>9} {'p50 s':>7} {'p95 s':>7} {'p100 s':>7} {'bytes ratio':>12}")
        for n, size in enumerate(sizes):
            r = round_for(services, ordered[:size], lessons[:n + 2], args.sync_threads, args.timeout)
            results[str(size)] = r
            print(f"{size:>6} {r['verified']:>9} {r['p50_s']:>7} {r['p95_s']:>7} {r['p100_s']:>7} "
                  f"{r['bytes_ratio']!s:>12}", flush=True)
        print(json.dumps({"fanout": results, "sync_threads": args.sync_threads}, sort_keys=True))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
