"""Channels and playlists: who shares a manifest, and which lesson version and file each audience gets."""

from __future__ import annotations

from datetime import date

import pytest

from playlists.channels import audience_key, channel_id, group_channels, playlist_for
from playlists.model import Audience, Item, LessonVersion, Programme, Rendition, Slot

TODAY = date(2026, 11, 22)


def rendition(profile: str, n: int = 1) -> Rendition:
    sha = f"{n:064x}"
    ext = {"radio": "mp3", "terminal-audio": "m4a", "terminal-video": "mp4"}[profile]
    return Rendition(profile=profile, path=f"media/{sha}.{ext}", length=1000 * n, sha256=sha, duration=60.0 * n)


def version(lesson_id: int, language: str = "cmn", profiles=("radio", "terminal-audio", "terminal-video")):
    return LessonVersion(lesson_id=lesson_id, title=f"Lesson {lesson_id} ({language})", language=language,
                         renditions=tuple(rendition(p, lesson_id * 10 + i) for i, p in enumerate(profiles)))


def programme(pid=1, code="2026-Q4", items=None, valid_from=date(2026, 10, 1), valid_until=date(2026, 12, 31),
              slots=()):
    items = items if items is not None else (Item(position=1, lesson=version(pid * 100 + 1)),)
    return Programme(id=pid, code=code, version=1, title=code, valid_from=valid_from, valid_until=valid_until,
                     items=tuple(items), slots=tuple(slots))


def radio(language="cmn", groups=()):
    return Audience(kind="radio", language=language, groups=frozenset(groups))


@pytest.mark.parametrize("device_language, main, variants, expected", [
    ("bo", "cmn", ["bo", "nan"], "bo"),                       # exact variant
    ("BO", "cmn", ["bo"], "bo"),                              # tags compare case-insensitively
    ("cmn", "cmn", ["bo"], "cmn"),                            # the main lesson is already in the language
    ("cmn", "zh-Hans", ["cmn-Hans"], "cmn-Hans"),             # primary-subtag fallback
    ("cmn", "zh-Hans", ["cmn-Hans", "cmn"], "cmn"),           # an exact match beats a primary-subtag one
    ("nan-TW", "cmn", ["nan"], "nan"),                        # a regional device takes the plain language
    ("zh-Hans-CN", "cmn", ["zh-Hant", "zh-Hans"], "zh-Hans"),  # the longest shared prefix wins
    ("cdo", "cmn", ["bo", "nan"], "cmn"),                     # no variant: the main lesson
    ("cdo", "cmn", [], "cmn"),                                # no variants at all
])
def test_each_device_gets_the_lesson_in_its_language_where_one_exists(device_language, main, variants, expected):
    item = Item(position=1, lesson=version(1, main),
                variants=tuple(version(10 + i, lang) for i, lang in enumerate(variants)))
    playlist = playlist_for([programme(items=[item])], radio(device_language), today=TODAY)
    assert [e.language for e in playlist.entries] == [expected]
    assert playlist.entries[0].title.endswith(f"({expected})")


@pytest.mark.parametrize("valid_from, valid_until, grace_days, held", [
    (date(2026, 10, 1), date(2026, 12, 31), 30, True),    # current
    (date(2026, 7, 1), date(2026, 9, 30), 30, False),     # ended 53 days ago, beyond 30 days' grace
    (date(2026, 7, 1), date(2026, 10, 23), 30, True),     # ended 30 days ago: last day of grace
    (date(2026, 7, 1), date(2026, 10, 22), 30, False),    # ended 31 days ago
    (date(2026, 7, 1), date(2026, 9, 30), 60, True),      # a longer grace keeps it
    (date(2026, 11, 22), date(2026, 11, 22), 0, True),    # a one-day programme on its day
    (date(2026, 11, 21), date(2026, 11, 21), 0, False),   # ... and the day after, with no grace
    (date(2027, 1, 1), date(2027, 3, 31), 30, True),      # future: devices get it early
])
def test_programmes_are_held_until_their_window_plus_grace(valid_from, valid_until, grace_days, held):
    p = programme(valid_from=valid_from, valid_until=valid_until)
    playlist = playlist_for([p], radio(), today=TODAY, grace_days=grace_days)
    assert bool(playlist.entries) is held


def test_negative_grace_is_refused():
    with pytest.raises(ValueError, match="grace_days"):
        playlist_for([programme()], radio(), today=TODAY, grace_days=-1)


@pytest.mark.parametrize("device_groups, item_groups, targeted", [
    ((), (), True),                                          # an item with no groups goes to every device
    (("tw-east",), (), True),
    ((), ("sea-branch",), False),                            # a device in no group gets only untargeted items
    (("tw-east", "sea-branch"), ("sea-branch",), True),      # a device in several groups
    (("tw-east", "vil-12"), ("vil-12", "retirees"), True),
    (("tw-east", "vil-12"), ("tw-west", "retirees"), False),
])
def test_items_reach_devices_in_any_of_their_groups(device_groups, item_groups, targeted):
    item = Item(position=1, lesson=version(1), groups=frozenset(item_groups))
    playlist = playlist_for([programme(items=[item])], radio(groups=device_groups), today=TODAY)
    assert bool(playlist.entries) is targeted
    assert playlist.skipped == ()  # not targeted is not "skipped": nothing for staff to fix


@pytest.mark.parametrize("kind, profiles, expected", [
    ("radio", ("radio", "terminal-audio", "terminal-video"), "radio"),
    ("terminal", ("radio", "terminal-audio", "terminal-video"), "terminal-video"),  # video preferred
    ("terminal", ("radio", "terminal-audio"), "terminal-audio"),                    # audio fallback
    ("terminal", ("radio",), None),                                                 # a radio file is not for a TV
    ("radio", ("terminal-audio", "terminal-video"), None),
])
def test_each_kind_gets_its_rendition_or_the_item_is_reported(kind, profiles, expected):
    item = Item(position=3, lesson=version(7, profiles=profiles))
    playlist = playlist_for([programme(items=[item])], Audience(kind, "cmn", frozenset()), today=TODAY)
    if expected is None:
        assert playlist.entries == ()
        [skipped] = playlist.skipped
        assert (skipped.programme_code, skipped.position, skipped.lesson_id) == ("2026-Q4", 3, 7)
        assert "no" in skipped.reason and "rendition" in skipped.reason
    else:
        assert [e.rendition.profile for e in playlist.entries] == [expected]
        assert playlist.skipped == ()


def test_a_variant_without_the_rendition_is_skipped_not_replaced_by_another_language():
    item = Item(position=1, lesson=version(1, "cmn"), variants=(version(2, "bo", profiles=("terminal-audio",)),))
    playlist = playlist_for([programme(items=[item])], radio("bo"), today=TODAY)
    assert playlist.entries == ()
    assert "(bo)" in playlist.skipped[0].reason


def test_optional_items_are_listed_as_optional_and_entries_carry_their_programme():
    items = [Item(position=2, lesson=version(2), mandatory=False), Item(position=1, lesson=version(1))]
    p = programme(pid=5, code="2026-winter", items=items)
    entries = playlist_for([p], radio(), today=TODAY).entries
    assert [(e.position, e.mandatory) for e in entries] == [(1, True), (2, False)]
    first = entries[0]
    assert (first.programme_id, first.programme_code, first.programme_version) == (5, "2026-winter", 1)
    assert (first.valid_from, first.valid_until) == (date(2026, 10, 1), date(2026, 12, 31))
    assert first.rendition == version(1).rendition("radio")


def test_entries_are_ordered_by_programme_start_then_id_then_position():
    later = programme(pid=1, code="2027-Q1", valid_from=date(2027, 1, 1), valid_until=date(2027, 3, 31),
                      items=[Item(position=1, lesson=version(11))])
    b = programme(pid=3, code="B", items=[Item(position=2, lesson=version(32)), Item(position=1, lesson=version(31))])
    a = programme(pid=2, code="A", items=[Item(position=1, lesson=version(21))])
    entries = playlist_for([later, b, a], radio(), today=TODAY).entries
    assert [(e.programme_code, e.position) for e in entries] == [("A", 1), ("B", 1), ("B", 2), ("2027-Q1", 1)]


def test_channel_ids_are_stable_across_runs():
    # A changed id would make every device in the county resubscribe: this value must never move.
    audience = Audience("radio", "cmn", frozenset({"tw-east", "sea-branch"}))
    assert audience_key(audience) == '["radio","cmn",["sea-branch","tw-east"]]'
    assert channel_id(audience) == "ch-63cf857cf866346b"
    assert channel_id(Audience("radio", "CMN", frozenset({"sea-branch", "tw-east"}))) == "ch-63cf857cf866346b"


@pytest.mark.parametrize("a, b, same", [
    (Audience("radio", "cmn", frozenset({"a", "b"})), Audience("radio", "cmn", frozenset({"b", "a"})), True),
    (Audience("radio", "zh-Hans", frozenset()), Audience("radio", "ZH-hans", frozenset()), True),
    (Audience("radio", "cmn", frozenset()), Audience("terminal", "cmn", frozenset()), False),
    (Audience("radio", "cmn", frozenset()), Audience("radio", "bo", frozenset()), False),
    (Audience("radio", "cmn", frozenset({"a"})), Audience("radio", "cmn", frozenset({"a", "b"})), False),
    (Audience("radio", "cmn", frozenset({"a,b"})), Audience("radio", "cmn", frozenset({"a", "b"})), False),
])
def test_devices_with_the_same_audience_key_share_a_channel(a, b, same):
    channels = group_channels({"dev-b": b, "dev-a": a})
    assert (len(channels) == 1) is same
    assert (channel_id(a) == channel_id(b)) is same
    if same:
        [channel] = channels.values()
        assert channel.devices == ("dev-a", "dev-b")
        assert channel.audience == a  # the first device's audience, whatever the mapping order


def test_group_channels_keys_channels_by_id_in_order():
    devices = {f"r{i}": Audience("radio", lang, frozenset({"tw-east"})) for i, lang in enumerate(["cmn", "bo", "cmn"])}
    devices["t1"] = Audience("terminal", "cmn", frozenset({"vil-1"}))
    channels = group_channels(devices)
    assert list(channels) == sorted(channels)
    assert sorted(c.devices for c in channels.values()) == [("r0", "r2"), ("r1",), ("t1",)]
    assert all(c.id == cid and cid == channel_id(c.audience) for cid, c in channels.items())


@pytest.mark.parametrize("build, field", [
    (lambda: Rendition("cassette", "media/x.mp3", 1, "0" * 64, 1.0), "Rendition.profile"),
    (lambda: Rendition("radio", "/media/x.mp3", 1, "0" * 64, 1.0), "Rendition.path"),
    (lambda: Rendition("radio", "media/../x.mp3", 1, "0" * 64, 1.0), "Rendition.path"),
    (lambda: Rendition("radio", "media/x.mp3", -1, "0" * 64, 1.0), "Rendition.length"),
    (lambda: Rendition("radio", "media/x.mp3", 1, "0" * 63, 1.0), "Rendition.sha256"),
    (lambda: Rendition("radio", "media/x.mp3", 1, "0" * 64, float("nan")), "Rendition.duration"),
    (lambda: LessonVersion(1, "t", "c", ()), "LessonVersion.language"),
    (lambda: LessonVersion(1, "t", "zh_Hans", ()), "LessonVersion.language"),
    (lambda: LessonVersion(1, "t", "cmn", (rendition("radio", 1), rendition("radio", 2))), "LessonVersion.renditions"),
    (lambda: Item(-1, version(1)), "Item.position"),
    (lambda: Slot("7:00"), "Slot.time"),
    (lambda: Slot("24:00"), "Slot.time"),
    (lambda: Slot("07:00", kind="disco"), "Slot.kind"),
    (lambda: programme(valid_from=date(2026, 12, 1), valid_until=date(2026, 11, 1)), "Programme.valid_until"),
    (lambda: programme(items=[Item(1, version(1)), Item(1, version(2))]), "Programme.items"),
    (lambda: programme(slots=[Slot("07:00", item_position=9)]), "Programme.slots"),
    (lambda: Audience("phone", "cmn", frozenset()), "Audience.kind"),
    (lambda: Audience("radio", "Mandarin Chinese", frozenset()), "Audience.language"),
])
def test_model_refuses_bad_values_naming_the_field(build, field):
    with pytest.raises(ValueError, match=field):
        build()
