"""The media downloader against a real local HTTP server: resume after dropped connections, never past the signed
length, servers that ignore Range, HTTP errors, too-slow links, and the server's Date header."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from device_agent.fetcher import DownloadError, FetchLimits, HttpFetcher, StorageFull
from device_agent.store import AgentStore
from device_agent.timekeeping import TimeKeeper, record_enrolment_time
from firmware_stub.sim import SimClock
from tests.conftest import free_port

BODY = os.urandom(300_000)
SERVER_DATE = "Sun, 22 Nov 2026 03:10:00 GMT"
NO_WAIT = dict(sleep=lambda _s: None)


class MediaServer(ThreadingHTTPServer):
    """Serves one file at /media/lesson.mp3, misbehaving as a test asks."""

    daemon_threads = True

    def __init__(self, body: bytes):
        super().__init__(("127.0.0.1", 0), MediaHandler)
        self.body = body
        self.honour_range = True
        self.cut_after: int | None = None  # close the connection after this many body bytes...
        self.cuts_left = 0  # ...for this many requests
        self.status = 200
        self.trickle: float | None = None  # seconds between single bytes
        self.requests: list[dict[str, str | None]] = []
        self.stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/media/lesson.mp3"


class MediaHandler(BaseHTTPRequestHandler):
    server: MediaServer

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def date_time_string(self, timestamp=None) -> str:
        return SERVER_DATE

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()

    def do_GET(self) -> None:
        srv = self.server
        srv.requests.append({"range": self.headers.get("Range"), "auth": self.headers.get("Authorization")})
        if srv.status != 200:
            self.send_error(srv.status)
            return
        start = 0
        ranged = self.headers.get("Range")
        if ranged and srv.honour_range:
            start = int(ranged.removeprefix("bytes=").rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(srv.body) - 1}/{len(srv.body)}")
        else:
            self.send_response(200)
        payload = srv.body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        try:
            if srv.trickle is not None:
                for byte in payload:
                    if srv.stopping.is_set():
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(srv.trickle)
            elif srv.cut_after is not None and srv.cuts_left > 0:
                srv.cuts_left -= 1
                self.wfile.write(payload[:srv.cut_after])  # then the connection drops
            else:
                self.wfile.write(payload)
        except OSError:  # the client gave up on us
            pass
        self.close_connection = True


@pytest.fixture
def server():
    srv = MediaServer(BODY)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.stopping.set()
    srv.shutdown()
    srv.server_close()
    thread.join()


@pytest.fixture
def partial(tmp_path) -> Path:
    return tmp_path / "partial" / "lesson.mp3"


def test_a_download_resumes_after_dropped_connections(server, partial):
    server.cut_after, server.cuts_left = 50_000, 3
    fetcher = HttpFetcher(token="tok-123", limits=FetchLimits(attempts=2, backoff=0), **NO_WAIT)

    fetcher.download(server.url, partial, len(BODY))

    assert partial.read_bytes() == BODY
    assert [r["range"] for r in server.requests] == [None, "bytes=50000-", "bytes=100000-", "bytes=150000-"]
    assert fetcher.bytes_received == len(BODY)  # nothing fetched twice: the data budget pays once
    assert {r["auth"] for r in server.requests} == {"Bearer tok-123"}


def test_a_download_resumes_from_the_partial_file_an_earlier_run_left(server, partial):
    partial.parent.mkdir(parents=True)
    partial.write_bytes(BODY[:120_000])  # the agent was restarted mid-download
    fetcher = HttpFetcher(**NO_WAIT)

    fetcher.download(server.url, partial, len(BODY))

    assert partial.read_bytes() == BODY
    assert [r["range"] for r in server.requests] == ["bytes=120000-"]
    assert fetcher.bytes_received == len(BODY) - 120_000


def test_a_partial_file_longer_than_signed_is_thrown_away(server, partial):
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"x" * (len(BODY) + 10))

    HttpFetcher(**NO_WAIT).download(server.url, partial, len(BODY))

    assert partial.read_bytes() == BODY
    assert [r["range"] for r in server.requests] == [None]


def test_a_server_sending_more_than_the_signed_length_is_cut_at_the_length(server, partial):
    signed = 200_000  # the server's file is 300,000 bytes: longer than the target info says
    fetcher = HttpFetcher(**NO_WAIT)

    fetcher.download(server.url, partial, signed)

    assert partial.stat().st_size == signed
    assert partial.read_bytes() == BODY[:signed]  # sha256 verification then decides whether it is the lesson
    assert fetcher.bytes_received >= signed  # what came over the wire counts against the data budget


def test_a_server_that_ignores_range_still_gives_the_right_file(server, partial):
    server.honour_range = False
    server.cut_after, server.cuts_left = 50_000, 1

    HttpFetcher(limits=FetchLimits(attempts=2, backoff=0), **NO_WAIT).download(server.url, partial, len(BODY))

    assert partial.read_bytes() == BODY
    assert [r["range"] for r in server.requests] == [None, "bytes=50000-"]


def test_an_http_error_gives_up_after_the_attempts(server, partial):
    server.status = 404
    sleeps: list[float] = []
    fetcher = HttpFetcher(limits=FetchLimits(attempts=2, backoff=0), sleep=sleeps.append)

    with pytest.raises(DownloadError, match=r"gave up after 2 failed attempts \(DownloadError: HTTP 404\)"):
        fetcher.download(server.url, partial, len(BODY))

    assert len(server.requests) == 2
    assert len(sleeps) == 2


def test_an_unreachable_server_gives_a_download_error(partial):
    fetcher = HttpFetcher(limits=FetchLimits(attempts=1, backoff=0, connect_timeout=2), **NO_WAIT)

    with pytest.raises(DownloadError, match="gave up after 1 failed attempts"):
        fetcher.download(f"http://127.0.0.1:{free_port()}/media/lesson.mp3", partial, 10)


@pytest.mark.timeout(20)
def test_a_link_slower_than_the_minimum_rate_is_given_up(server, partial):
    server.trickle = 0.2  # 5 bytes a second
    fetcher = HttpFetcher(limits=FetchLimits(min_rate=1000, rate_window=0.5, attempts=1, backoff=0), **NO_WAIT)

    with pytest.raises(DownloadError, match="slower than 1000 B/s"):
        fetcher.download(server.url, partial, len(BODY))

    kept = partial.stat().st_size
    assert 0 < kept < 100  # the few bytes received stay for the next sync to resume from
    assert partial.read_bytes() == BODY[:kept]


def test_server_date_teaches_the_device_the_time(server, tmp_path):
    store = AgentStore(tmp_path / "agent")
    store.ensure()
    record_enrolment_time(store, "Sun, 22 Nov 2026 01:00:00 GMT")  # enrolled this morning
    clock = SimClock(datetime(1970, 1, 1, tzinfo=timezone.utc))  # a radio whose RTC lost its battery
    time_keeper = TimeKeeper(clock, store)
    seen: list[str | None] = []

    def on_date(value):
        seen.append(value)
        time_keeper.observe_date_header(value)

    assert HttpFetcher(on_date=on_date, **NO_WAIT).server_date(server.url) is True

    assert seen == [SERVER_DATE]
    assert abs((time_keeper.now() - datetime(2026, 11, 22, 3, 10, tzinfo=timezone.utc)).total_seconds()) < 2
    assert server.requests == []  # HEAD only: no media bytes spent on learning the time


def test_server_date_says_false_when_the_server_is_unreachable():
    seen = []
    fetcher = HttpFetcher(on_date=seen.append, limits=FetchLimits(connect_timeout=2), **NO_WAIT)

    assert fetcher.server_date(f"http://127.0.0.1:{free_port()}/") is False
    assert seen == []


def test_each_download_reports_the_date_header(server, partial):
    seen = []
    HttpFetcher(on_date=seen.append, **NO_WAIT).download(server.url, partial, len(BODY))

    assert seen == [SERVER_DATE]



# -- a keep-alive server: a refused request must not poison the next one on the same pooled connection -----------

TIMESTAMP = b'{"signed":{"_type":"timestamp","version":7}}'


@pytest.fixture(scope="module")
def keepalive_server(tmp_path_factory):
    """gunicorn (gthread, HTTP/1.1 keep-alive, as `lessoncast run` serves) with an app that answers the next
    N.root.json with a 404 whose JSON body follows its headers a moment later, as a busy server sends it."""
    import subprocess
    import sys
    import urllib.request

    from tests.conftest import free_port

    port = free_port()
    app_dir = Path(__file__).parent
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", "4", "-w", "1",
                             "--keep-alive", "30", "-b", f"127.0.0.1:{port}", "keepalive_app:app"],
                            cwd=app_dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/tuf/metadata/"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "timestamp.json", timeout=2).read()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise AssertionError(f"gunicorn did not start: {proc.stderr.read().decode(errors='replace')}")
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_a_404_then_a_200_on_one_kept_alive_connection_succeeds_every_time(keepalive_server):
    from tuf.api import exceptions as tuf_exceptions

    from device_agent.fetcher import TufFetcher

    fetcher = TufFetcher(on_date=lambda _d: None)
    failures = []
    for _ in range(200):
        with pytest.raises(tuf_exceptions.DownloadHTTPError):
            fetcher.fetch(keepalive_server + "2.root.json")  # python-tuf asks for the next root: none yet
        try:
            assert fetcher.download_bytes(keepalive_server + "timestamp.json", 16_384) == TIMESTAMP
        except tuf_exceptions.DownloadError as exc:
            failures.append(repr(exc))

    assert failures == [], f"{len(failures)} of 200 failed, e.g. {failures[:1]}"


def test_a_media_error_answer_does_not_poison_the_next_download(keepalive_server, tmp_path):
    fetcher = HttpFetcher(limits=FetchLimits(attempts=1, backoff=0), **NO_WAIT)
    for n in range(50):
        with pytest.raises(DownloadError, match="HTTP 404"):
            fetcher.download(keepalive_server + "7.root.json", tmp_path / f"missing-{n}", 10)
        fetcher.download(keepalive_server + "timestamp.json", tmp_path / f"ts-{n}", len(TIMESTAMP))
        assert (tmp_path / f"ts-{n}").read_bytes() == TIMESTAMP


@pytest.fixture
def card(tmp_path):
    """A 512 kB tmpfs, the device's storage card: nobody else writes there, and a full one gives a real ENOSPC."""
    import subprocess

    disk = tmp_path / "card"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield disk
    subprocess.run(["umount", "-l", str(disk)])


def test_a_full_disk_stops_the_download_at_once_and_removes_the_partial(server, card):
    (card / "photos").write_bytes(b"\1" * 400_000)  # something else filled most of the card
    partial = card / "partial" / "lesson.mp3"
    waits = []
    fetcher = HttpFetcher(limits=FetchLimits(attempts=5, backoff=0), sleep=waits.append)

    with pytest.raises(StorageFull, match="no space left on the device's storage.*Free some storage"):
        fetcher.download(server.url, partial, len(BODY))  # 300 kB into about 100 kB: a real ENOSPC

    assert not partial.exists(), "the partial copy gave its room back"
    assert len(server.requests) == 1 and waits == [], "a full disk is not retried like a dropped connection"


def test_a_download_stops_short_of_the_storage_reserve(server, card):
    partial = card / "partial" / "lesson.mp3"
    fetcher = HttpFetcher(reserve_bytes=400_000, **NO_WAIT)  # 512 kB card: room for about a third of the file

    with pytest.raises(StorageFull, match="keeping 400000 bytes free"):
        fetcher.download(server.url, partial, len(BODY))

    assert not partial.exists()
    assert server.requests and not any(r["range"] for r in server.requests), "no retry"
