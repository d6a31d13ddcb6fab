"""Playback through the hardware interface, recording every play in the outbox before anything else.

A play is reported as events: ``started``, ``progress`` every ``progress_interval`` seconds, and one of
``completed``, ``stopped`` or ``skipped``. Each covers the position range played since the previous one, so the
union of ranges is what was heard. The position is saved often, so a member resumes where they stopped, and a play
cut by a power failure is closed on the next start with the range saved before the cut.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict
from typing import Any, Optional

from playlists.manifest import format_utc

from device_agent import events
from device_agent.schedule import PlayerState

log = logging.getLogger(__name__)
STATE_FILE = "player.json"
SAVE_EVERY_S = 5.0


def item_dict(item) -> dict[str, Any]:
    """The fields of a manifest item a play event needs (kept in the saved state, which outlives the manifest)."""
    return {"programme": item.programme, "lesson": item.lesson, "sha256": item.sha256, "path": item.path,
            "title": item.title}


class Player:
    """Plays manifest items on the hardware's audio output and records the plays."""

    def __init__(self, hw, outbox, store, time, *, progress_interval: float = 60.0):
        self.hw = hw
        self.outbox = outbox
        self.store = store
        self.time = time
        self.progress_interval = progress_interval
        saved = store.read_json(STATE_FILE) or {}
        self.state = PlayerState(positions=dict(saved.get("positions", {})),
                                 completed=frozenset(saved.get("completed", [])), current=None,
                                 last_slot=saved.get("last_slot"), menu_choice=saved.get("menu_choice"))
        self.play: Optional[dict[str, Any]] = saved.get("play")
        self._last_save = 0.0
        self._last_progress = 0.0

    # -- saved state --------------------------------------------------------------------------------------------
    def save(self) -> None:
        """Persist positions, completions, the last slot and the open play."""
        state = asdict(self.state)
        state["completed"] = sorted(self.state.completed)
        state["play"] = self.play
        self.store.write_json(STATE_FILE, state)
        self._last_save = self.hw.clock.monotonic()

    def recover(self) -> None:
        """Close a play that a power cut interrupted, with the range saved before the cut."""
        if self.play is None:
            return
        play, self.play = self.play, None
        saved_pos = play.get("position", play["segment_start"])
        self._record(play, "stopped", play["segment_start"], max(saved_pos, play["segment_start"]))
        self.save()

    # -- recording ------------------------------------------------------------------------------------------------
    def _record(self, play: dict[str, Any], phase: str, start: float, end: float) -> None:
        audio = self.hw.audio
        self.outbox.record(events.play(
            self.time, phase=phase, play_id=play["play_id"], item=play["item"], start=start, end=end,
            volume=audio.volume, muted=audio.muted, trigger=play["trigger"], started_at=play["started_at"],
            slot_kind=play.get("slot_kind")))

    # -- control ----------------------------------------------------------------------------------------------------
    @property
    def playing(self) -> Optional[dict[str, Any]]:
        """The open play (its item, trigger and positions), if any."""
        return self.play

    def start(self, item, trigger: str, position: Optional[float] = None, slot_kind: Optional[str] = None) -> None:
        """Stop whatever plays, then play ITEM from POSITION (default: where the member stopped).

        SLOT_KIND is the kind of the schedule slot that started it, if one did.
        """
        from device_agent.schedule import resume_position

        if self.play is not None:
            self.stop("skipped" if trigger == "key" else "stopped")
        path = self.store.media_file(item.path)
        pos = resume_position(self.state, item) if position is None else position
        self.hw.audio.play(path, pos)  # raises AudioError for a file the hardware cannot play
        self.play = {"play_id": str(uuid.uuid4()), "item": item_dict(item), "trigger": trigger,
                     "started_at": format_utc(self.time.now()), "segment_start": pos, "position": pos,
                     "slot_kind": slot_kind}
        self.state.current = item.sha256
        self._record(self.play, "started", pos, pos)
        self._last_progress = self.hw.clock.monotonic()
        self.save()

    def stop(self, phase: str = "stopped") -> None:
        """End the open play, recording the range since the last event."""
        if self.play is None:
            return
        pos = self.hw.audio.position()
        self.hw.audio.stop()
        self._close(phase, pos)

    def _close(self, phase: str, pos: float) -> None:
        play = self.play
        self._record(play, phase, play["segment_start"], max(pos, play["segment_start"]))
        sha = play["item"]["sha256"]
        if phase == "completed":
            self.state.completed = self.state.completed | {sha}
            self.state.positions.pop(sha, None)
        else:
            self.state.positions[sha] = pos
        self.play = None
        self.state.current = None
        self.save()

    def pause_toggle(self) -> None:
        """Pause or resume the open play."""
        audio = self.hw.audio
        if audio.state() == "playing":
            audio.pause()
        elif audio.state() == "paused":
            audio.resume()

    def tick(self) -> None:
        """Record progress and completion; save the position now and then. Call it every loop."""
        if self.play is None:
            return
        audio = self.hw.audio
        state = audio.state()
        now = self.hw.clock.monotonic()
        if state == "finished":
            self._close("completed", audio.duration() or audio.position())
            return
        if state == "idle":  # the output stopped by itself (device error): close what was heard
            self._close("stopped", self.play.get("position", self.play["segment_start"]))
            return
        pos = audio.position()
        self.play["position"] = pos
        if now - self._last_progress >= self.progress_interval and state == "playing":
            self._record(self.play, "progress", self.play["segment_start"], pos)
            self.play["segment_start"] = pos
            self._last_progress = now
            self.save()
        elif now - self._last_save >= SAVE_EVERY_S:
            self.state.positions[self.play["item"]["sha256"]] = pos
            self.save()
