"""Tiny generated media and a manual clock shared by the firmware stub tests."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from firmware_stub.sim import SimClock
from tests.generated_media import tone

START = datetime(2024, 6, 1, 8, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="session")
def lesson_media(tmp_path_factory) -> dict[str, Path]:
    """A 2 s tone as mp3 and as wav, and a text file named like an mp3."""
    root = tmp_path_factory.mktemp("firmware_media")
    fake = root / "not_audio.mp3"
    fake.write_text("this is a lesson plan, not a recording\n" * 20, encoding="utf-8")
    return {"mp3": tone(root / "lesson.mp3", 2.0), "wav": tone(root / "lesson.wav", 2.0), "fake": fake}


@pytest.fixture
def clock() -> SimClock:
    """A simulated clock crawling at a thousandth of real time, so only ``advance`` moves it noticeably."""
    return SimClock(START, speed=0.001)
