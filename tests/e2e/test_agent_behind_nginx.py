"""An agent enrols and syncs through nginx and gunicorn, started as `lessoncast run` starts them.

The other agent tests serve the app with werkzeug; this one checks that what nginx changes on the way (buffered
requests, proxied TUF metadata, media files sent by nginx with Range) is invisible to a real device.
"""

import signal

import pytest

from playlists.manifest import parse_manifest
from server import settings as settings_mod
from server.services import Services
from tests.conftest import free_port
from tests.e2e.agent_harness import add_and_enrol, poll, publish_lessons, start_agent
from tests.e2e.stack import get_json, wait_for


@pytest.fixture
def front(services):
    """nginx in front of gunicorn on the test instance's port, built by the same code `lessoncast run` uses."""
    from server.cli.stack import _child_env, _web_children

    overrides = {s.name: services.settings[s.name] for s in settings_mod.SETTINGS
                 if services.settings.sources[s.name] != "default"}
    front_services = Services(settings_mod.load(environ={}, overrides={**overrides,
                                                                       "web_backend_port": free_port()}))
    env = {k: v for k, v in _child_env(front_services.settings).items() if not k.startswith("LESSONCAST_")}
    env.update({s.env: str(front_services.settings[s.name]) for s in settings_mod.SETTINGS
                if front_services.settings.sources[s.name] != "default"})
    children = _web_children(front_services, env)
    assert [c.name for c in children] == ["web", "nginx"]
    for child in children:
        child.start()
    base = f"http://127.0.0.1:{services.settings.port}"
    try:
        wait_for(lambda: get_json(f"{base}/healthz")[0], 60, "nginx and gunicorn to answer")
        yield base
    finally:
        for child in reversed(children):
            child.signal(signal.SIGTERM)
            child.proc.wait(timeout=30)


def test_agent_enrols_and_syncs_through_nginx(broker, org, ready_lesson, front, tmp_path):
    services = org
    lesson = ready_lesson("第一课", 2.0)
    store = add_and_enrol(services, front, tmp_path / "radio")
    publish_lessons(services, [lesson])
    running = start_agent(store, speed=4.0)
    try:
        poll(lambda: store.current_manifest() and len(parse_manifest(store.current_manifest()).items) == 1, 60,
             "the programme to be synced through nginx")
        running.hw.keys.press("play_pause")
        poll(lambda: any(a == "finished" for a, _p, _pos in running.hw.audio.history), 30, "the lesson to finish")
    finally:
        running.halt()
