"""What the people and places around simulated devices do: members press play at plausible hours, terminals'
members check in to class slots, batteries drain and get recharged, boats go out of range for days, clocks reset,
and radios change hands.

A ``Behaviour`` acts on one device before each of its agent's rounds, through the hardware (keys, reader, battery,
RTC) and the network the device has; it never touches the agent's logic. Every decision comes from a seeded
``random.Random``, so a run with the same seed makes the same choices at the same device times.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Optional, Sequence
from zoneinfo import ZoneInfo

DAY = 86400.0
# How likely a member picks up the radio in each local hour (relative weights): mornings, lunch and evenings most,
# the working day a little, never at night.
HOUR_WEIGHTS = (0, 0, 0, 0, 0, 1, 3, 3, 1, 1, 1, 1, 3, 2, 1, 1, 1, 1, 2, 3, 3, 3, 1, 0)
ZONE = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Habits:
    """How often things happen, per device and per device-clock day."""

    plays_per_day: float = 1.0  # a member's presses of play, spread over the day by HOUR_WEIGHTS
    hour_weights: tuple[float, ...] = HOUR_WEIGHTS
    boat_share: float = 0.05  # radios that go out of range for days at a time
    boat_trip_days: tuple[float, float] = (1.0, 6.0)
    clock_resets_per_day: float = 0.01  # an RTC that lost its battery comes back at 2000-01-01
    handovers_per_day: float = 0.002  # a radio passed to another member of its site
    checkins_per_class: tuple[int, int] = (3, 12)


@dataclass
class Counts:
    """What the behaviours did, for progress lines and reports."""

    presses: int = 0
    checkins: int = 0
    charges: int = 0
    trips: int = 0
    clock_resets: int = 0
    handovers: int = 0


@dataclass
class Behaviour:
    """The people around one device. QR_CODES are the member numbers members show at a terminal to check in;
    HOLDERS the member numbers a radio can be handed to; HANDOVER(uid, member) asks the server to record it."""

    kind: str
    rng: random.Random
    habits: Habits = field(default_factory=Habits)
    counts: Counts = field(default_factory=Counts)
    qr_codes: Sequence[str] = ()
    holders: Sequence[str] = ()
    handover: Optional[Callable[[str, str], None]] = None
    boat: bool = False
    _last: Optional[float] = None
    _checked_play: Optional[str] = None
    _trip_at: Optional[float] = None

    def __post_init__(self) -> None:
        if self.kind == "radio" and self.rng.random() < self.habits.boat_share:
            self.boat = True

    def act(self, device) -> None:
        """Whatever happened to DEVICE since the last call (events drawn per elapsed device-clock second)."""
        hw = device.agent.hw
        now = hw.clock.monotonic()
        if self._last is None:
            self._last = now
            self._trip_at = now + self.rng.uniform(0, 3 * DAY) if self.boat else None
            return
        elapsed, self._last = now - self._last, now
        if elapsed <= 0:
            return
        if self.kind == "radio":
            self._radio(device, hw, now, elapsed)
        else:
            self._terminal(device, hw)
        if self._happens(self.habits.clock_resets_per_day, elapsed):
            hw.clock.set_wall(datetime(2000, 1, 1, tzinfo=timezone.utc))
            self.counts.clock_resets += 1

    def _happens(self, per_day: float, elapsed: float) -> bool:
        """Whether an event of PER_DAY rate happened during ELAPSED seconds (a Poisson draw)."""
        return self.rng.random() < 1.0 - math.exp(-per_day * elapsed / DAY)

    def _radio(self, device, hw, now: float, elapsed: float) -> None:
        weights = self.habits.hour_weights
        weight = weights[device.agent.time.now().astimezone(ZONE).hour] / (sum(weights) / 24.0)
        if weight and self._happens(self.habits.plays_per_day * weight, elapsed):
            hw.keys.press("play_pause")
            self.counts.presses += 1
        battery = hw.battery
        level = battery.level()
        if level is not None:
            if not battery.charging() and level <= 15:
                battery.set_charging(True)
                self.counts.charges += 1
            elif battery.charging() and level >= 95:
                battery.set_charging(False)
        if self.boat and self._trip_at is not None and now >= self._trip_at:
            days = self.rng.uniform(*self.habits.boat_trip_days)
            device.offline_until = now + days * DAY
            self._trip_at = device.offline_until + self.rng.uniform(1, 4) * DAY
            self.counts.trips += 1
        if self.handover is not None and self.holders and self._happens(self.habits.handovers_per_day, elapsed):
            self.handover(device.uid, self.rng.choice(list(self.holders)))
            self.counts.handovers += 1

    def _terminal(self, device, hw) -> None:
        playing = device.agent.player.playing
        if not playing or playing.get("slot_kind") != "class" or not self.qr_codes:
            return
        if playing["play_id"] == self._checked_play:
            return
        self._checked_play = playing["play_id"]
        low, high = self.habits.checkins_per_class
        for code in self.rng.sample(list(self.qr_codes), min(len(self.qr_codes), self.rng.randint(low, high))):
            hw.checkin.present("qr", code)
            self.counts.checkins += 1
