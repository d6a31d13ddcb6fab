"""M3U8 export: a plain player can play a channel's lessons from the media server."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from playlists.m3u import to_m3u8
from playlists.manifest import Manifest, ManifestItem, ManifestProgramme

SHA = "ab" * 32


def manifest(*titles_and_durations) -> Manifest:
    items = tuple(ManifestItem(programme="2026-Q4", position=i, lesson=i, title=title, language="cmn",
                               mandatory=True, profile="radio", path=f"media/{SHA[:-2]}{i:02d}.mp3", length=10,
                               sha256=f"{SHA[:-2]}{i:02d}", duration=duration, valid_from=date(2026, 10, 1),
                               valid_until=date(2026, 12, 31))
                  for i, (title, duration) in enumerate(titles_and_durations, start=1))
    programme = ManifestProgramme(1, "2026-Q4", 1, "Q4", date(2026, 10, 1), date(2026, 12, 31), 30)
    return Manifest(1, "ch-0123456789abcdef", 3, datetime(2026, 11, 22, 3, tzinfo=timezone.utc), "radio", "cmn",
                    (programme,), items, ())


def test_export_lists_every_item_with_its_duration_and_absolute_url():
    text = to_m3u8(manifest(("第一讲 党章", 1799.6), ("第二讲", 60.0)), "https://media.county.example/lc/")
    assert text == (
        "#EXTM3U\n"
        "#EXTINF:1800,第一讲 党章\n"
        f"https://media.county.example/lc/media/{SHA[:-2]}01.mp3\n"
        "#EXTINF:60,第二讲\n"
        f"https://media.county.example/lc/media/{SHA[:-2]}02.mp3\n"
    )
    assert text.encode("utf-8").decode("utf-8") == text


@pytest.mark.parametrize("base_url", ["http://10.0.0.5:8080", "http://10.0.0.5:8080/", "http://10.0.0.5:8080//"])
def test_base_url_joins_with_or_without_a_trailing_slash(base_url):
    assert to_m3u8(manifest(("a", 1.0)), base_url).splitlines()[2] == f"http://10.0.0.5:8080/media/{SHA[:-2]}01.mp3"


@pytest.mark.parametrize("title, shown", [
    ("第一讲\n#EXTINF:1,evil", "第一讲 #EXTINF:1，evil"),  # a newline cannot start a line of its own
    ("a\r\nb", "a b"),
    ("党章, 第一章", "党章， 第一章"),
    ("tab\there", "tab here"),
    ("  padded  ", "padded"),
    ("line\u2028separator", "line separator"),
])
def test_titles_cannot_break_the_playlist(title, shown):
    lines = to_m3u8(manifest((title, 5.0)), "https://x.example").splitlines()
    assert len(lines) == 3
    assert lines[1] == f"#EXTINF:5,{shown}"


@pytest.mark.parametrize("base_url", ["media.example", "/media", "ftp://x.example", "https://x.example/?t=1",
                                      "https://x.example/#f", ""])
def test_base_url_must_be_an_absolute_http_url(base_url):
    with pytest.raises(ValueError, match="base_url"):
        to_m3u8(manifest(("a", 1.0)), base_url)


def test_an_empty_channel_exports_just_the_header():
    assert to_m3u8(manifest(), "https://x.example") == "#EXTM3U\n"
