"""Media on the way to devices under faults, with real agents on simulated hardware, real ffmpeg-made lessons and a
real Mosquitto:

- a TCP proxy between the devices and the web server drops, stalls and throttles the media downloads;
- the web server (a real ``lessoncast web`` process) is restarted while devices are downloading;
- a file in the server's media store is corrupted: every device refuses it and keeps its verified programme, and
  takes the programme once the file is repaired.

Each ends with the account of every file a device must hold: held with the right sha256 (stored), missing (lost),
held twice, or held although nobody sent it (unexpected), and the files a device held before the fault unchanged.
"""

from __future__ import annotations

import hashlib
import os
import signal

from playlists.manifest import media_of
from tests.e2e.agent_harness import add_and_enrol, fast_options, poll, publish_lessons, start_agent
from tests.e2e.faults.accounting import Account, rows_checksum, scaled
from tests.e2e.tcp_proxy import TcpProxy

DEVICES = scaled(2, 8)


def _through(store, port: int, proxy_port: int, keys=("media_base_url",)) -> None:
    """Send the device's requests for KEYS through a proxy on PROXY_PORT."""
    creds = store.credentials()
    for key in keys:
        creds[key] = creds[key].replace(f":{port}/", f":{proxy_port}/")
    store.write_json("credentials.json", creds, private=True)


def _held(store) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in store.media_dir.iterdir()}


def _file_account(name: str, agents, before: dict, **figures) -> Account:
    """Every (device, sha256) the devices' manifests name, against the sha256 of what each device holds."""
    sent, stored, after = [], [], {}
    for n, running in enumerate(agents):
        manifest = running.agent.manifest
        sent += [(n, item.sha256) for item in media_of(manifest).values()]
        held = _held(running.agent.store)
        stored += [(n, hashlib.sha256(data).hexdigest()) for data in held.values()]
        after.update({(n, k): v for k, v in held.items()})
    return Account.of(name, sent, stored, intact_before=rows_checksum(before.items()),
                      intact_after=rows_checksum((k, after.get(k)) for k in before), figures=figures)


def _options():
    # A sync the network broke is tried again within a second or two (the agent's default waits 30 s, then longer).
    return fast_options(retry_first_s=1.0, retry_cap_s=2.0)


def test_proxy_drops_stalls_and_throttles_media_downloads(broker, org, ready_lesson, live_server, tmp_path,
                                                          fault_account):
    services = org
    first, second = ready_lesson("第一课", 2.0), ready_lesson("第二课", scaled(10.0, 120.0))

    def faults(n: int) -> dict:  # every connection gets one of the three faults, in turn
        return [{"drop_after": 40_000}, {"stall_after": 20_000, "stall_s": 3.0},
                {"throttle_bps": 100_000}][n % 3]

    proxy = TcpProxy(services.settings.port, faults=faults)
    publish_lessons(services, [first])
    agents = []
    try:
        for n in range(DEVICES):
            store = add_and_enrol(services, live_server, tmp_path / f"radio{n}")
            _through(store, services.settings.port, proxy.port)
            agents.append(start_agent(store, options=_options()))
        poll(lambda: all(a.agent.manifest for a in agents), 60, "the first programme on every device")
        before = {(n, k): v for n, a in enumerate(agents) for k, v in _held(a.agent.store).items()}
        v1 = agents[0].agent.manifest.version
        publish_lessons(services, [first, second])
        poll(lambda: all(a.agent.manifest.version > v1 for a in agents), scaled(90, 300),
             "the second programme through the faulty link")
        account = _file_account("proxy drops, stalls and throttles media", agents, before,
                                connections=proxy.connections, cuts=proxy.cuts, stalls=proxy.stalls)
    finally:
        for running in agents:
            running.halt()
        proxy.close()
    fault_account(account)
    assert proxy.cuts >= 1 and proxy.stalls >= 1


def test_web_server_restarted_during_downloads(broker, org, ready_lesson, tmp_path, fault_account):
    from tests.e2e.fleet_sim import lessoncast_env
    from tests.e2e.stack import get_json, start, stop, wait_for

    services = org
    first, second = ready_lesson("第一课", 2.0), ready_lesson("第二课", scaled(6.0, 120.0))
    env = lessoncast_env(services)
    base = f"http://127.0.0.1:{services.settings.port}"
    log = tmp_path / "web.log"
    web = start(["web"], env, log)
    # Downloads slow enough to be cut in the middle: every media connection at 15 kB/s.
    proxy = TcpProxy(services.settings.port, faults=lambda _n: {"throttle_bps": 15_000})
    agents = []
    restarts = 0
    try:
        wait_for(lambda: get_json(f"{base}/healthz")[0], 60, "the web server", log)
        publish_lessons(services, [first])
        for n in range(DEVICES):
            store = add_and_enrol(services, base, tmp_path / f"radio{n}")
            _through(store, services.settings.port, proxy.port)
            agents.append(start_agent(store, options=_options()))
        poll(lambda: all(a.agent.manifest for a in agents), 60, "the first programme on every device")
        before = {(n, k): v for n, a in enumerate(agents) for k, v in _held(a.agent.store).items()}
        v1 = agents[0].agent.manifest.version
        publish_lessons(services, [first, second])
        for _ in range(scaled(1, 3)):
            received = sum(a.agent.syncer.fetcher.bytes_received for a in agents)
            poll(lambda: sum(a.agent.syncer.fetcher.bytes_received for a in agents) > received + 10_000, 60,
                 "downloads under way")
            os.killpg(web.pid, signal.SIGKILL)  # the web server crashes mid-download (gunicorn and its workers)
            web.wait(timeout=10)
            web = start(["web"], env, log)
            restarts += 1
            wait_for(lambda: get_json(f"{base}/healthz")[0], 60, "the web server again", log)
        poll(lambda: all(a.agent.manifest.version > v1 for a in agents), scaled(120, 400),
             "the second programme after the restarts")
        # The killed server's socket buffers still deliver what it had written (up to a few MB on loopback), so
        # with short lessons the crash mostly hits the devices' next requests; connections counts the reconnects.
        account = _file_account("web server restarted during downloads", agents, before, restarts=restarts,
                                connections=proxy.connections)
    finally:
        for running in agents:
            running.halt()
        proxy.close()
        stop(web, signal.SIGTERM)
    fault_account(account)


def test_corrupted_file_in_media_store_is_rejected(broker, org, ready_lesson, live_server, tmp_path, fault_account):
    from sqlalchemy import select

    from server.lessons.models import Rendition

    services = org
    first, second = ready_lesson("第一课", 2.0), ready_lesson("第二课", 3.0)
    publish_lessons(services, [first])
    agents = []
    try:
        for n in range(DEVICES):
            store = add_and_enrol(services, live_server, tmp_path / f"radio{n}")
            agents.append(start_agent(store, options=fast_options()))
        poll(lambda: all(a.agent.manifest for a in agents), 60, "the first programme on every device")
        before = {(n, k): v for n, a in enumerate(agents) for k, v in _held(a.agent.store).items()}
        v1 = agents[0].agent.manifest.version
        with services.db.session() as session:
            sha, ext = session.execute(select(Rendition.sha256, Rendition.extension)
                                       .where(Rendition.lesson_id == second, Rendition.profile == "radio")).one()
        served = services.media.path(sha, ext)
        original = served.read_bytes()
        served.write_bytes(original[:200] + bytes([original[200] ^ 0x40]) + original[201:])  # bit rot on the disk
        publish_lessons(services, [first, second])
        poll(lambda: all("does not match" in a.agent.sync_reason for a in agents), 60,
             "every device to refuse the corrupted file")
        refused = sum(1 for a in agents if a.agent.manifest.version == v1)
        bad = [a for a in agents if (a.agent.store.media_dir / f"{sha}.{ext}").exists()]
        assert refused == len(agents) and not bad, "devices keep their verified programme and no bad copy"
        served.write_bytes(original)  # the operator restores the file from the backup
        for running in agents:
            running.agent.request_sync(force=True)
        poll(lambda: all(a.agent.manifest.version > v1 for a in agents), 60, "the programme once repaired")
        account = _file_account("corrupted file in the media store", agents, before, refused_by=refused)
    finally:
        for running in agents:
            running.halt()
    fault_account(account)
