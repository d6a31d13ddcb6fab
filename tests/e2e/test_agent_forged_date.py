"""A hostile mirror between a real agent and the server dates every answer ten years ahead. The agent keeps syncing
and verifying while the lie goes on, across a restart, and after it stops; its time never runs off with the lie."""

from __future__ import annotations

import http.client
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from playlists.manifest import parse_manifest
from tests.e2e.agent_harness import add_and_enrol, poll, publish_lessons, start_agent

FORGED = "Sat, 03 Dec 2036 00:00:00 GMT"


class DateForgingMirror(ThreadingHTTPServer):
    """Forwards GET and HEAD to the server, replacing the Date header of every answer while `forging` is on."""

    daemon_threads = True

    def __init__(self, target_port: int):
        super().__init__(("127.0.0.1", 0), _Forward)
        self.target_port = target_port
        self.forging = True
        self.forged = 0
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Forward(BaseHTTPRequestHandler):
    server: DateForgingMirror

    def log_message(self, *args) -> None:
        pass

    def _forward(self) -> None:
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.target_port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "range", "if-range")}
        upstream.request(self.command, self.path, headers=headers)
        answer = upstream.getresponse()
        body = answer.read()
        upstream.close()
        self.send_response_only(answer.status, answer.reason)
        for key, value in answer.getheaders():
            if key.lower() not in ("date", "connection", "transfer-encoding", "server"):
                self.send_header(key, value)
        if self.server.forging:
            self.server.forged += 1
        self.send_header("Date", FORGED if self.server.forging else self.date_time_string())
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True

    do_GET = do_HEAD = _forward


def _version(store):
    data = store.current_manifest()
    return parse_manifest(data).version if data else 0


def _believes_the_truth(agent) -> bool:
    return abs(agent.time.now() - datetime.now(timezone.utc)) < timedelta(hours=1)


def test_a_mirror_dating_every_answer_ten_years_ahead_never_freezes_the_device(broker, org, ready_lesson,
                                                                            live_server, tmp_path):
    services = org
    lessons = [ready_lesson(f"第{n}课", 2.0) for n in (1, 2, 3)]
    store = add_and_enrol(services, live_server, tmp_path / "radio")
    mirror = DateForgingMirror(services.settings.port)
    creds = store.credentials()
    for key in ("metadata_url", "targets_url", "media_base_url", "repository_url"):
        creds[key] = creds[key].replace(live_server.rstrip("/") + "/", mirror.url)
    store.write_json("credentials.json", creds, private=True)
    publish_lessons(services, lessons[:1])
    running = start_agent(store)
    try:
        # While the lie goes on, the device syncs, verifies and keeps its own time.
        v1 = poll(lambda: _version(store), 60, "the first programme through the lying mirror")
        assert mirror.forged > 0, "the mirror did lie"
        assert _believes_the_truth(running.agent), running.agent.time.now()
        assert not running.agent.status()["stale"]
        publish_lessons(services, lessons[:2])
        v2 = poll(lambda: _version(store) > v1 and _version(store), 60, "a new programme while the mirror lies")
    finally:
        running.halt()

    running = start_agent(store)  # a restart with whatever the lie left on disk
    try:
        publish_lessons(services, lessons)
        v3 = poll(lambda: _version(store) > v2 and _version(store), 60, "a new programme after a restart")
        assert _believes_the_truth(running.agent), running.agent.time.now()
        assert not running.agent.status()["stale"]

        mirror.forging = False  # the mirror is fixed
        publish_lessons(services, lessons[1:])
        poll(lambda: _version(store) > v3, 60, "a new programme from the honest mirror")
        assert _believes_the_truth(running.agent) and not running.agent.status()["stale"]
        assert running.agent.time.offset is not None, "the honest Date header is heard again"
    finally:
        running.halt()
        mirror.close()
