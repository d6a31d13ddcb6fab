"""Benchmark: media downloads from lessoncast against nginx serving the same file, with wrk.

lessoncast runs as a user starts it (``lessoncast run``: nginx in front of gunicorn; a media request goes to the
Flask view, which checks it and hands the file back to nginx with ``X-Accel-Redirect``). The reference is a plain
nginx, configured like lessoncast's (sendfile, tcp_nopush, worker_processes auto, no access log), serving the same
file from the same directory. Each side gets 64 concurrent connections for whole files and for Range requests.
The machine is shared, so the load drifts: each round runs the two sides back to back (in alternating order) and
gives a paired ratio; the median of the rounds' ratios and MB/s count. Target: lessoncast >= 0.9 x nginx.

    .venv/bin/python bench/media_http.py                       # 4 MB file, 64 connections, 5 rounds of 6 s
    .venv/bin/python bench/media_http.py --size-mb 16 --seconds 15

Needs wrk (Debian package ``wrk``) and nginx. Ends with one JSON line: lessoncast_mb_s, nginx_mb_s and ratio
(lessoncast over nginx, whole files and Range requests together), and the figures of each mode.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.supervisor import system_executable  # noqa: E402
from tests.conftest import free_port, make_services  # noqa: E402
from tests.e2e.stack import stack_env  # noqa: E402

UNITS = {"B": 1 / 2**20, "KB": 1 / 1024, "MB": 1.0, "GB": 1024.0}


def wait_port(port: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing listens on port {port} after {timeout} s")


def wrk(url: str, seconds: int, connections: int, headers: list[str]) -> float:
    """MB/s wrk measured for URL."""
    argv = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", *sum((["-H", h] for h in headers), []),
            url]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    match = re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not match or errors:
        raise SystemExit(f"wrk failed for {url}:\n{out}")
    return float(match.group(1)) * UNITS[match.group(2)]


def reference_nginx(work: Path, directory: Path, port: int) -> subprocess.Popen:
    """A plain nginx serving DIRECTORY at /media/, configured like lessoncast's."""
    user = ""
    if os.geteuid() == 0:
        import grp
        import pwd

        user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};\n"
    conf = work / "nginx.conf"
    conf.write_text(f"""{user}daemon off;
worker_processes auto;
pid {work}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {work}/body; proxy_temp_path {work}/proxy; fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 30s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location /media/ {{ alias {directory}/; }}
    }}
}}
""")
    return subprocess.Popen([system_executable("nginx"), "-p", f"{work}/", "-c", str(conf)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=4.0, help="size of the media file served")
    parser.add_argument("--seconds", type=int, default=6, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of paired runs; the medians count")
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("this benchmark needs wrk: apt-get install wrk (make deps installs it)")

    tmp = Path(tempfile.mkdtemp(prefix="lc-media-http-"))
    data = tmp / "data"
    env = stack_env(data)
    port = int(env["LESSONCAST_PORT"])
    services = make_services(data, port=port, mqtt_port=int(env["LESSONCAST_MQTT_PORT"]),
                             mqtt_server_port=int(env["LESSONCAST_MQTT_SERVER_PORT"]))
    body = os.urandom(int(args.size_mb * 2**20))
    sha = hashlib.sha256(body).hexdigest()
    staged = tmp / "lesson.mp3"
    staged.write_bytes(body)
    services.media.put(staged, sha, "mp3")
    stored = services.media.path(sha, "mp3")
    services.db.dispose()

    ref_port = free_port()
    (tmp / "ref").mkdir()
    log = open(tmp / "run.log", "ab")
    run = subprocess.Popen([str(Path(sys.executable).parent / "lessoncast"), "run"], env=env, stdout=log,
                           stderr=subprocess.STDOUT, start_new_session=True)
    ref = reference_nginx(tmp / "ref", stored.parent, ref_port)
    try:
        wait_port(port)
        wait_port(ref_port)
        urls = {"lessoncast": f"http://127.0.0.1:{port}/media/{sha}.mp3",
                "nginx": f"http://127.0.0.1:{ref_port}/media/{sha}.mp3"}
        import urllib.request

        for url in urls.values():  # both serve the same bytes before anything is timed
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(url, timeout=10) as response:
                        assert hashlib.sha256(response.read()).hexdigest() == sha, url
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
        half = len(body) // 2
        modes = {"whole": [], "range": [f"Range: bytes={half // 2}-{half // 2 + half - 1}"]}
        runs: dict[str, dict[str, list[float]]] = {mode: {side: [] for side in urls} for mode in modes}
        ratios: dict[str, list[float]] = {mode: [] for mode in modes}
        for n in range(args.rounds):
            for mode, headers in modes.items():
                order = list(urls) if n % 2 == 0 else list(reversed(urls))
                got = {side: wrk(urls[side], args.seconds, args.connections, headers) for side in order}
                for side, mb_s in got.items():
                    runs[mode][side].append(mb_s)
                ratios[mode].append(got["lessoncast"] / got["nginx"])
                print(f"round {n + 1} {mode:5} lessoncast {got['lessoncast']:7.1f} MB/s  nginx {got['nginx']:7.1f} "
                      f"MB/s  ratio {ratios[mode][-1]:.2f}", flush=True)
    finally:
        run.send_signal(signal.SIGINT)
        try:
            run.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
        ref.terminate()
        ref.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)

    median = statistics.median
    per_mode = {mode: median(ratios[mode]) for mode in modes}
    ratio = median([r for mode in modes for r in ratios[mode]])
    lessoncast = median([v for mode in modes for v in runs[mode]["lessoncast"]])
    nginx = median([v for mode in modes for v in runs[mode]["nginx"]])
    for mode in modes:
        print(f"{mode:5} median lessoncast/nginx = {per_mode[mode]:.2f}")
    print(f"ratio {ratio:.2f} (target >= 0.9)")
    print(json.dumps({"lessoncast_mb_s": round(lessoncast, 1), "nginx_mb_s": round(nginx, 1), "ratio": round(ratio, 3),
                      "whole_ratio": round(per_mode["whole"], 3), "range_ratio": round(per_mode["range"], 3),
                      "file_mb": args.size_mb, "connections": args.connections, "rounds": args.rounds}))


if __name__ == "__main__":
    main()
