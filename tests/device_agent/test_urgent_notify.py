""""Download now": a notify marked urgent makes the agent sync at once, outside its download window; an ordinary
notify waits for the window. Older payloads (no "urgent") decode as ordinary, and a bad value is refused."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from playlists import topics
from playlists.payloads import Notify, decode_notify, encode
from tests.device_agent.test_agent_sync_results import OK, FakeSyncer, agent, step  # noqa: F401 (agent: fixture)

ISSUED = datetime(2026, 11, 22, 3, 0, tzinfo=timezone.utc)


def _notify(version: int, urgent: bool) -> bytes:
    return encode(Notify(channel="ch-1", manifest_version=version, timestamp_version=version, issued_at=ISSUED,
                         urgent=urgent))


def test_an_urgent_notify_syncs_outside_the_download_window(agent):  # noqa: F811
    syncer = agent.syncer = FakeSyncer([OK, OK, OK])
    assert step(agent)  # the start-up sync
    agent.manifest = None  # as before the first programme: every notify is news

    agent._message(topics.notify("ch-1"), _notify(2, urgent=False))
    assert step(agent)
    agent._message(topics.notify("ch-1"), _notify(3, urgent=True))
    assert step(agent)
    # The ordinary notify's sync keeps to the download window; the urgent one's ignores it.
    assert syncer.calls[1:] == [False, True]


def test_the_urgent_flag_on_the_wire():
    plain = _notify(2, urgent=False)
    assert b"urgent" not in plain and decode_notify(plain).urgent is False  # what older agents and servers send
    assert decode_notify(_notify(2, urgent=True)).urgent is True
    with pytest.raises(ValueError, match="notify.urgent"):
        decode_notify(plain[:-1] + b',"urgent":"yes"}')
