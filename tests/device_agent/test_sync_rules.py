"""Sync's rules before any download: the download window, metadata expiry, and whether a new programme fits the
storage, this month's data budget and the device's quota."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

import pytest

from device_agent.store import AgentStore
from device_agent.sync import RESERVE_BYTES, USAGE_FILE, Syncer, in_window, metadata_expiry
from device_agent.timekeeping import TimeKeeper
from firmware_stub.sim import SimClock, SimStorage
from playlists.manifest import build_manifest, canonical_json, media_of, parse_manifest
from playlists.model import Audience, Item, LessonVersion, Programme, Rendition
from tests.conftest import free_port

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=timezone.utc)  # 11:00 in Asia/Shanghai
MB = 1024 * 1024


@pytest.mark.parametrize("window, local, inside", [
    (None, "12:00", True),                      # no window: any time
    ([], "03:00", True),
    (["01:00", "05:00"], "03:00", True),
    (["01:00", "05:00"], "01:00", True),        # the start is inside
    (["01:00", "05:00"], "05:00", False),       # the end is not
    (["01:00", "05:00"], "12:00", False),
    (["22:00", "05:00"], "23:30", True),        # crossing midnight: late evening
    (["22:00", "05:00"], "00:10", True),        # crossing midnight: small hours
    (["22:00", "05:00"], "04:59", True),
    (["22:00", "05:00"], "05:00", False),
    (["22:00", "05:00"], "21:59", False),
    (("22:00", "05:00"), "12:00", False),       # a tuple works as well as a list
])
def test_in_window(window, local, inside):
    assert in_window(window, datetime.fromisoformat(f"2026-11-22T{local}")) is inside


@pytest.fixture
def store(tmp_path) -> AgentStore:
    store = AgentStore(tmp_path / "agent")
    store.ensure()
    store.write_json("credentials.json", {
        "device": "r-0001", "kind": "radio", "http_token": "not-a-real-token",
        "metadata_url": f"http://127.0.0.1:{free_port()}/tuf/", "targets_url": "http://127.0.0.1:9/targets/",
    }, private=True)
    return store


def write_timestamp(store: AgentStore, expires: str) -> None:
    (store.metadata_dir / "timestamp.json").write_text(json.dumps(
        {"signatures": [], "signed": {"_type": "timestamp", "version": 7, "expires": expires}}))


def test_metadata_expiry_reads_the_cached_timestamp(store):
    write_timestamp(store, "2026-12-01T00:00:00Z")

    assert metadata_expiry(store) == datetime(2026, 12, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("content", [None, "not json", json.dumps({"signed": {}}), json.dumps({"other": 1})])
def test_metadata_expiry_is_unknown_without_a_readable_timestamp(store, content):
    if content is not None:
        (store.metadata_dir / "timestamp.json").write_text(content)

    assert metadata_expiry(store) is None


def radio_files(*lengths: int):
    """The unique files of a real radio manifest whose lessons have these lengths."""
    items = []
    for n, length in enumerate(lengths, start=1):
        sha = f"{n:064x}"
        rendition = Rendition("radio", f"media/{sha}.mp3", length, sha, 600.0)
        items.append(Item(n, LessonVersion(40 + n, f"第{n}讲", "cmn", (rendition,))))
    programme = Programme(1, "2026-Q4", 1, "2026年第四季度", date(2026, 10, 1), date(2026, 12, 31), tuple(items))
    built = build_manifest(channel="radio-cmn", audience=Audience("radio", "cmn", frozenset()), version=3,
                           issued_at=T0, programmes=[programme], today=date(2026, 11, 22), grace_days=30)
    return media_of(parse_manifest(canonical_json(built)))


def syncer(store, total_bytes=8 * 2**30, quota_bytes=None) -> Syncer:
    time = TimeKeeper(SimClock(T0), store)
    return Syncer(store, SimStorage(store.media_dir, total_bytes), time, quota_bytes=quota_bytes)


FILES = radio_files(3_000_000, 2_000_000)
NEED = 5_000_000


def test_a_programme_that_fits_everything_is_allowed(store):
    store.write_json(USAGE_FILE, {"2026-11": 1_000_000})

    assert syncer(store, quota_bytes=6_000_000)._room_for(NEED, FILES, {"data_budget_mb": 10}, T0) == ""


def test_too_little_storage_keeps_the_current_programme(store):
    problem = syncer(store, total_bytes=RESERVE_BYTES + 1_000_000)._room_for(NEED, FILES, {}, T0)

    assert problem.startswith("not enough storage")
    assert "5.0 MB more, 1.0 MB free" in problem
    assert "keeping the current programme" in problem


def test_media_already_on_the_device_count_against_the_free_space(store):
    (store.media_dir / "old-lesson.mp3").write_bytes(b"\0" * 900_000)
    small = syncer(store, total_bytes=RESERVE_BYTES + 1_000_000)

    assert "not enough storage" in small._room_for(500_000, FILES, {}, T0)
    assert small._room_for(50_000, FILES, {}, T0) == ""


def test_the_monthly_data_budget_keeps_the_current_programme(store):
    store.write_json(USAGE_FILE, {"2026-11": 2_000_000})

    problem = syncer(store)._room_for(NEED, FILES, {"data_budget_mb": 5}, T0)

    assert "data budget" in problem
    assert "(5 MB, 2.0 MB used)" in problem


def test_last_months_downloads_do_not_count_against_this_months_budget(store):
    store.write_json(USAGE_FILE, {"2026-10": 4_000_000})

    assert syncer(store)._room_for(NEED, FILES, {"data_budget_mb": 5}, T0) == ""


def test_the_budget_file_keeps_only_the_current_month(store):
    sync = syncer(store)
    sync._add_usage("2026-10", 4_000_000)
    sync._add_usage("2026-11", 1_000_000)
    sync._add_usage("2026-11", 500_000)

    assert store.read_json(USAGE_FILE) == {"2026-11": 1_500_000}


def test_a_programme_over_the_device_quota_keeps_the_current_programme(store):
    problem = syncer(store, quota_bytes=4_000_000)._room_for(0, FILES, {}, T0)  # even with every file present

    assert "quota" in problem
    assert "(5.0 MB)" in problem and "(4.0 MB)" in problem


def test_outside_the_download_window_a_sync_is_deferred_and_reports_stale_metadata(store):
    write_timestamp(store, "2026-11-01T00:00:00Z")  # expired three weeks ago
    config = {"channel": "radio-cmn", "timezone": "Asia/Shanghai", "download_window": ["01:00", "05:00"]}

    result = syncer(store).run(config)  # 11:00 in Shanghai, and the server is unreachable

    assert (result.state, result.reason, result.stale) == ("deferred", "outside the download window", True)


def test_an_unreachable_server_is_a_network_failure_not_a_refusal(store, tmp_path):
    from playlists.trust_repository import init_keys

    init_keys(tmp_path / "keys", tmp_path / "repo", "a passphrase", now=T0)
    store.root_path.write_bytes((tmp_path / "repo" / "metadata" / "root.json").read_bytes())
    config = {"channel": "radio-cmn", "download_window": None}

    result = syncer(store).run(config)  # the metadata URL is a port nobody listens on

    assert result.state == "error" and result.problem == "network" and result.transient
    assert result.reason.startswith("network: ")
    assert "could not be fetched" in result.reason and "failed verification" not in result.reason


def test_a_url_in_the_config_never_redirects_the_device(store, tmp_path):
    """A retained config naming another repository and media host (signed by nobody) moves nothing: the device keeps
    fetching from the URLs of its enrolment, and the other host never hears from it."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from device_agent.sync import enrolled_urls
    from playlists.trust_repository import init_keys

    seen: list[str] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_HEAD(self) -> None:
            seen.append(self.path)
            self.send_response(200)
            self.end_headers()

        do_GET = do_HEAD

    other = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    threading.Thread(target=other.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        init_keys(tmp_path / "keys", tmp_path / "repo", "a passphrase", now=T0)
        store.root_path.write_bytes((tmp_path / "repo" / "metadata" / "root.json").read_bytes())
        elsewhere = f"http://127.0.0.1:{other.server_port}/"
        config = {"channel": "radio-cmn", "download_window": None,
                  "repository_url": elsewhere + "tuf/", "media_base_url": elsewhere}

        result = syncer(store).run(config)
    finally:
        other.shutdown()
        other.server_close()

    assert seen == []
    assert result.problem == "network"  # it tried its enrolment's server, which is down
    creds = store.credentials()
    assert enrolled_urls(creds).metadata == creds["metadata_url"]


def test_an_old_enrolment_without_a_media_url_uses_the_repository_server():
    from device_agent.sync import enrolled_urls

    urls = enrolled_urls({"metadata_url": "https://lessons.example.cn/tuf/metadata/",
                          "targets_url": "https://lessons.example.cn/tuf/targets/"})

    assert urls.media_base == "https://lessons.example.cn/"
