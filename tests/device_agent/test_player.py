"""Playback on simulated hardware with a real ffmpeg-made lesson: the play events, saved positions, a power cut and
muted listening."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timezone

import pytest

from device_agent.outbox import Outbox
from device_agent.player import SAVE_EVERY_S, Player
from device_agent.schedule import resume_position
from device_agent.store import AgentStore
from device_agent.timekeeping import TimeKeeper
from firmware_stub.hal import AudioError
from firmware_stub.sim import SimClock, sim_hardware
from playlists.manifest import build_manifest, canonical_json, parse_manifest
from playlists.model import Audience, Item, LessonVersion, Programme, Rendition
from tests.generated_media import tone

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=timezone.utc)
# Longer than schedule.RESTART_MARGIN (5 s), so a position in the middle is one a member resumes from.
SECONDS = 12.0
NEAR = 0.01  # the clock is stepped: only advance moves it, so positions are exact up to the events' rounding


@pytest.fixture(scope="module")
def lesson_file(tmp_path_factory):
    return tone(tmp_path_factory.mktemp("media") / "lesson.mp3", SECONDS)


@pytest.fixture
def store(tmp_path, lesson_file):
    store = AgentStore(tmp_path / "agent")
    store.ensure()
    return store


@pytest.fixture
def item(store, lesson_file):
    """The lesson as the verified manifest lists it, its file in the media directory under the manifest's name."""
    data = lesson_file.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    rendition = Rendition("radio", f"media/{sha}.mp3", len(data), sha, SECONDS)
    programme = Programme(1, "2026-Q4", 1, "2026年第四季度", date(2026, 10, 1), date(2026, 12, 31),
                          (Item(1, LessonVersion(41, "第一讲", "cmn", (rendition,))),))
    built = build_manifest(channel="radio-cmn", audience=Audience("radio", "cmn", frozenset()), version=1,
                           issued_at=T0, programmes=[programme], today=date(2026, 11, 22), grace_days=30)
    [listed] = parse_manifest(canonical_json(built)).items
    store.media_file(listed.path).write_bytes(data)
    return listed


class Radio:
    """One boot of a radio: fresh hardware and clock over the persistent store and outbox file."""

    def __init__(self, store, progress_interval=4.0):
        self.clock = SimClock(T0, stepped=True)
        self.hw = sim_hardware("radio", store.media_dir, clock=self.clock)
        self.time = TimeKeeper(self.clock, store)
        self.outbox = Outbox(store.outbox_path, clock=self.clock)
        self.player = Player(self.hw, self.outbox, store, self.time, progress_interval=progress_interval)

    def plays(self) -> list[dict]:
        return [e for e in self.outbox.pending(limit=-1) if e["type"] == "play"]

    def phases(self) -> list[tuple[str, float, float]]:
        return [(e["phase"], e["start_position"], e["end_position"]) for e in self.plays()]

    def run(self, seconds: float) -> None:
        """Let SECONDS of device time pass, with the agent's loop ticking every second."""
        for _ in range(int(seconds)):
            self.clock.advance(1.0)
            self.player.tick()


@pytest.fixture
def radio(store):
    radio = Radio(store)
    yield radio
    radio.outbox.close()


def test_start_records_a_started_event(radio, item):
    radio.player.start(item, "key")

    [started] = radio.plays()
    assert (started["phase"], started["start_position"], started["end_position"]) == ("started", 0.0, 0.0)
    assert (started["programme"], started["lesson"], started["sha256"]) == ("2026-Q4", 41, item.sha256)
    assert (started["trigger"], started["muted"], started["volume"]) == ("key", False, 80)
    assert started["started_at"] == "2026-11-22T03:00:00Z"
    assert radio.hw.audio.state() == "playing"


def test_progress_events_cover_what_was_heard_and_completed_closes_the_play(radio, item):
    radio.player.start(item, "key")
    radio.run(5)

    progress = radio.plays()[-1]
    assert progress["phase"] == "progress"
    assert progress["start_position"] == 0.0
    assert progress["end_position"] == pytest.approx(4.0, abs=NEAR)

    radio.run(10)  # past the end of the 12 s lesson

    phases = radio.phases()
    names = [p for p, _, _ in phases]
    assert names[0] == "started" and names[-1] == "completed"
    assert set(names[1:-1]) == {"progress"} and len(names) >= 4  # one every 4 s of a 12 s lesson
    # Each event starts where the previous one ended, and together they cover the whole lesson.
    for (_, _, end), (_, start, _) in zip(phases, phases[1:]):
        assert start == end
    assert phases[-1][2] == pytest.approx(SECONDS, abs=0.1)
    assert len({e["play_id"] for e in radio.plays()}) == 1
    assert radio.player.playing is None
    assert item.sha256 in radio.player.state.completed
    assert resume_position(radio.player.state, item) == 0.0  # a completed lesson starts again from the top


def test_stopping_midway_records_the_range_and_the_member_resumes_there(radio, item):
    radio.player.start(item, "key")
    radio.clock.advance(6.0)

    radio.player.stop("stopped")

    assert radio.phases()[-1][0] == "stopped"
    assert radio.phases()[-1][2] == pytest.approx(6.0, abs=NEAR)
    resume = resume_position(radio.player.state, item)
    assert resume == pytest.approx(6.0, abs=NEAR)

    radio.player.start(item, "key")  # play pressed again later

    assert radio.phases()[-1] == ("started", round(resume, 2), round(resume, 2))
    assert radio.hw.audio.position() == pytest.approx(resume, abs=NEAR)


def test_starting_another_play_by_key_skips_the_one_playing(radio, item):
    radio.player.start(item, "key")
    radio.clock.advance(2.0)

    radio.player.start(item, "key", position=0.0)

    assert [p for p, _, _ in radio.phases()] == ["started", "skipped", "started"]
    assert len({e["play_id"] for e in radio.plays()}) == 2


def test_a_play_cut_by_a_power_failure_is_closed_on_the_next_boot(store, item):
    before = Radio(store, progress_interval=60.0)
    before.player.start(item, "key")
    before.run(7)  # the agent saves the position every few seconds while playing
    play_id = before.plays()[0]["play_id"]
    before.outbox.close()  # the power goes: no stop, no completed

    after = Radio(store, progress_interval=60.0)
    try:
        after.player.recover()

        closing = after.plays()[-1]
        assert closing["phase"] == "stopped"
        assert closing["play_id"] == play_id
        assert closing["start_position"] == 0.0
        # What was saved before the cut: at most SAVE_EVERY_S of the 7 s heard is lost.
        assert 7.0 - SAVE_EVERY_S - NEAR <= closing["end_position"] <= 7.0 + NEAR
        assert closing["end_position"] > 0
        assert after.player.playing is None
        assert resume_position(after.player.state, item) == pytest.approx(closing["end_position"], abs=NEAR)

        after.player.recover()  # a second boot does not close the same play again
        assert after.plays()[-1]["id"] == closing["id"]
    finally:
        after.outbox.close()


def test_muted_listening_is_recorded_as_muted(radio, item):
    radio.hw.audio.set_muted(True)

    radio.player.start(item, "key")
    radio.run(5)
    radio.player.stop("stopped")

    assert [e["muted"] for e in radio.plays()] == [True, True, True]


def test_volume_zero_counts_as_muted(radio, item):
    radio.hw.audio.set_volume(0)

    radio.player.start(item, "key")

    assert radio.plays()[0]["muted"] is True


def test_a_file_the_hardware_cannot_play_records_no_play(radio, item, store):
    store.media_file(item.path).write_bytes(b"not audio at all")

    with pytest.raises(AudioError, match="cannot be decoded"):
        radio.player.start(item, "key")

    assert radio.plays() == []
    assert radio.player.playing is None
