"""Radio tags: ID3v2.3, UTF-16, three frames, same text same bytes."""

from __future__ import annotations

import shutil

import pytest
from mutagen.id3 import ID3, TIT2, TXXX

from media.tags import write_radio_tags
from tests.media import synth


@pytest.fixture(scope="module")
def bare_mp3(tmp_path_factory):
    """A short MP3 without any ID3 tag, as ffmpeg writes the radio rendition."""
    path = tmp_path_factory.mktemp("tags") / "bare.mp3"
    synth.ffmpeg("-f", "lavfi", "-i", "sine=d=2", "-c:a", "libmp3lame", "-id3v2_version", "0", str(path))
    return path


def test_chinese_tags_read_back_as_v23_utf16(bare_mp3, tmp_path):
    path = shutil.copy(bare_mp3, tmp_path / "a.mp3")
    write_radio_tags(path, title="学习贯彻党的二十大精神", artist="李书记", album="冬训 第3讲")
    tag = ID3(path)
    assert tag.version == (2, 3, 0)
    assert {key: (frame.encoding, frame.text) for key, frame in tag.items()} == {
        "TIT2": (1, ["学习贯彻党的二十大精神"]),
        "TPE1": (1, ["李书记"]),
        "TALB": (1, ["冬训 第3讲"]),
    }


def test_same_text_same_bytes_and_old_frames_are_gone(bare_mp3, tmp_path):
    first, second = shutil.copy(bare_mp3, tmp_path / "1.mp3"), shutil.copy(bare_mp3, tmp_path / "2.mp3")
    # The second file starts with a v2.4 tag carrying extra frames, as a re-tag would find it.
    old = ID3()
    old.add(TIT2(encoding=3, text=["old"]))
    old.add(TXXX(encoding=3, desc="published", text=["2026-01-01"]))
    old.save(second, v2_version=4)
    for path in (first, second):
        write_radio_tags(path, title="第一课", artist="张三", album="党课")
    assert open(first, "rb").read() == open(second, "rb").read()
    assert sorted(ID3(second).keys()) == ["TALB", "TIT2", "TPE1"]


def test_empty_fields_are_left_out(bare_mp3, tmp_path):
    path = shutil.copy(bare_mp3, tmp_path / "a.mp3")
    write_radio_tags(path, title="第一课", artist="", album="")
    assert list(ID3(path).keys()) == ["TIT2"]
