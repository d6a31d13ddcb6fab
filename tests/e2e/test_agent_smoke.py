"""An enrolled agent syncs a published programme over the real stack and plays it on simulated hardware."""

from playlists.manifest import parse_manifest
from server.programmes import service as programmes, publish
from tests.e2e.agent_harness import add_and_enrol, poll, start_agent


def test_agent_syncs_and_plays(broker, org, ready_lesson, live_server, tmp_path):
    services = org
    first = ready_lesson("第一课", 2.0)
    second = ready_lesson("第二课", 2.5)
    store = add_and_enrol(services, live_server, tmp_path / "radio")
    pid = programmes.create(services, {"code": "Q4", "title": "第四季度", "valid_from": "2026-10-01",
                                       "valid_until": "2026-12-31",
                                       "items": [{"lesson": first}, {"lesson": second}]}, "test")
    publish.publish(services, pid, "test")
    running = start_agent(store, speed=4.0)
    try:
        poll(lambda: store.current_manifest() and len(parse_manifest(store.current_manifest()).items) == 2, 30,
             "the programme to be synced")
        running.hw.keys.press("play_pause")
        poll(lambda: any(a == "finished" for a, _p, _pos in running.hw.audio.history), 30, "the lesson to finish")
        poll(lambda: running.agent.player.playing is None, 10, "the play to be closed")
        poll(lambda: running.hw.display.last.startswith("■ 2"), 10, "the idle status line")
        assert "▶ 第一课" in running.hw.display.lines, "the display showed what played"
    finally:
        running.halt()
    from device_agent.outbox import Outbox

    outbox = Outbox(store.outbox_path)
    phases = [e.get("phase") for e in outbox.pending(1000) if e["type"] == "play"]
    outbox.close()
    assert "started" in phases and "completed" in phases, phases
