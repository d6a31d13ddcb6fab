"""Manifests: deterministic bytes from the server, strict parsing on the device, and what a new version costs."""

from __future__ import annotations

import copy
import json
from datetime import date, datetime, timedelta, timezone

import pytest

from playlists.channels import channel_id
from playlists.manifest import (
    SCHEMA,
    ManifestError,
    build_manifest,
    canonical_json,
    diff_manifests,
    media_of,
    parse_manifest,
)
from playlists.model import Audience, Item, LessonVersion, Programme, Rendition, Slot

TODAY = date(2026, 11, 22)
ISSUED = datetime(2026, 11, 22, 3, 0, tzinfo=timezone.utc)
TERMINAL = Audience("terminal", "bo", frozenset({"vil-12", "tw-east"}))
RADIO = Audience("radio", "cmn", frozenset({"sea-branch"}))


def sha(n: int) -> str:
    return f"{n:064x}"


def lesson(lesson_id: int, language: str = "cmn", title: str | None = None) -> LessonVersion:
    renditions = tuple(Rendition(profile, f"media/{sha(lesson_id * 10 + i)}.{ext}", 1000 * lesson_id + i,
                                 sha(lesson_id * 10 + i), 600.5)
                       for i, (profile, ext) in enumerate([("radio", "mp3"), ("terminal-video", "mp4")]))
    return LessonVersion(lesson_id, title or f"第{lesson_id}讲", language, renditions)


def q4() -> Programme:
    items = (
        Item(1, lesson(1), variants=(lesson(101, "bo"),)),
        Item(2, lesson(2), mandatory=False),
        Item(3, lesson(3), groups=frozenset({"sea-branch"})),
    )
    slots = (Slot("19:30"), Slot("07:00", "class", 1), Slot("12:00", "broadcast", 3))
    return Programme(1, "2026-Q4", 2, "2026年第四季度", date(2026, 10, 1), date(2026, 12, 31), items, slots)


def old_q3() -> Programme:
    return Programme(9, "2026-Q3", 1, "Q3", date(2026, 7, 1), date(2026, 9, 30), (Item(1, lesson(9)),))


def build(audience=TERMINAL, programmes=None, **kw) -> dict:
    args = dict(channel=channel_id(audience), audience=audience, version=7, issued_at=ISSUED,
                programmes=programmes if programmes is not None else [q4(), old_q3()], today=TODAY, grace_days=30)
    args.update(kw)
    return build_manifest(**args)


def test_a_terminal_manifest_lists_its_items_in_its_language_and_its_slots():
    m = build()
    assert (m["schema"], m["version"], m["issued_at"], m["kind"], m["language"]) == (
        1, 7, "2026-11-22T03:00:00Z", "terminal", "bo")
    assert [p["code"] for p in m["programmes"]] == ["2026-Q4"]  # Q3 ended beyond the grace days
    assert m["programmes"][0]["grace_days"] == 30
    assert [(i["position"], i["lesson"], i["language"], i["mandatory"], i["profile"]) for i in m["items"]] == [
        (1, 101, "bo", True, "terminal-video"), (2, 2, "cmn", False, "terminal-video")]
    # The slot pinned to item 3 (sea branch only) is left out: this terminal does not have it.
    assert m["slots"] == [{"programme": "2026-Q4", "time": "07:00", "kind": "class", "item_position": 1},
                          {"programme": "2026-Q4", "time": "19:30", "kind": "broadcast", "item_position": None}]


def test_a_radio_manifest_has_no_slots():
    m = build(RADIO)
    assert m["slots"] == []
    assert [(i["position"], i["profile"]) for i in m["items"]] == [(1, "radio"), (2, "radio"), (3, "radio")]


def test_a_programme_with_nothing_for_the_audience_is_left_out():
    sea_only = Programme(4, "sea", 1, "Sea", date(2026, 11, 1), date(2026, 11, 30),
                         (Item(1, lesson(4), groups=frozenset({"sea-branch"})),), (Slot("06:00"),))
    m = build(programmes=[sea_only])
    assert (m["programmes"], m["items"], m["slots"]) == ([], [], [])


def test_manifest_bytes_are_deterministic():
    first = canonical_json(build())
    reordered = [old_q3(), q4()]
    other_groups = Audience("terminal", "bo", frozenset({"tw-east", "vil-12"}))
    assert canonical_json(build(audience=other_groups, programmes=reordered)) == first
    assert not first.endswith(b"\n")
    assert "第101讲".encode() in first  # UTF-8, not \u escapes
    assert b'"schema":1,' in first  # compact separators, sorted keys
    assert json.loads(first) == build()


def test_issued_at_is_written_in_utc_and_naive_times_are_refused():
    beijing = timezone(timedelta(hours=8))
    assert build(issued_at=datetime(2026, 11, 22, 11, 0, tzinfo=beijing))["issued_at"] == "2026-11-22T03:00:00Z"
    with pytest.raises(ValueError, match="issued_at"):
        build(issued_at=datetime(2026, 11, 22, 3, 0))


def test_canonical_json_refuses_nan():
    with pytest.raises(ValueError):
        canonical_json({"duration": float("nan")})


def test_parse_reads_back_what_build_wrote():
    m = parse_manifest(canonical_json(build()))
    assert (m.schema, m.version, m.kind, m.language, m.issued_at) == (SCHEMA, 7, "terminal", "bo", ISSUED)
    assert m.channel == channel_id(TERMINAL)
    assert [p.code for p in m.programmes] == ["2026-Q4"]
    assert m.programmes[0].valid_until == date(2026, 12, 31)
    first = m.items[0]
    assert (first.programme, first.position, first.lesson, first.title, first.sha256, first.length) == (
        "2026-Q4", 1, 101, "第101讲", sha(1011), 101001)
    assert first.path == f"media/{sha(1011)}.mp4" and first.duration == 600.5
    assert [(s.time, s.kind, s.item_position) for s in m.slots] == [("07:00", "class", 1), ("19:30", "broadcast", None)]


def _item(m):
    return m["items"][0]


def _set(getter, key, value):
    def mutate(m):
        getter(m)[key] = value
    return mutate


def _drop(getter, key):
    def mutate(m):
        del getter(m)[key]
    return mutate


def _top(m):
    return m


def _duplicate_item(m):
    m["items"].append(copy.deepcopy(m["items"][0]))


def _radio_slot(m):
    m["kind"] = "radio"
    for item in m["items"]:
        item["profile"] = "radio"


@pytest.mark.parametrize("mutate, field", [
    (_set(_top, "schema", 3), "schema"),
    (_set(_top, "schema", "1"), "schema"),
    (_set(_top, "schema", True), "schema"),
    (_drop(_top, "items"), "manifest.items"),
    (_drop(_top, "issued_at"), "manifest.issued_at"),
    (_set(_top, "surprise", 1), "manifest.surprise"),
    (_set(_top, "channel", "ch/../x"), "channel"),
    (_set(_top, "channel", "#"), "channel"),
    (_set(_top, "version", 0), "version"),
    (_set(_top, "version", "7"), "version"),
    (_set(_top, "kind", "phone"), "kind"),
    (_set(_top, "language", "tibetan language"), "language"),
    (_set(_top, "issued_at", "2026-11-22 03:00:00"), "issued_at"),
    (_set(_top, "issued_at", "2026-11-22T03:00:00+08:00"), "issued_at"),
    (_set(_top, "items", {}), "items"),
    (_set(lambda m: m["programmes"][0], "valid_from", "2026-13-01"), "programmes[0].valid_from"),
    (_set(lambda m: m["programmes"][0], "valid_until", "2026-09-30"), "programmes[0].valid_until"),
    (_set(lambda m: m["programmes"][0], "grace_days", -1), "programmes[0].grace_days"),
    (lambda m: m["programmes"].append(copy.deepcopy(m["programmes"][0])), "programmes[1].code"),
    (_drop(_item, "sha256"), "items[0].sha256"),
    (_set(_item, "sha256", "ABC"), "items[0].sha256"),
    (_set(_item, "sha256", "A" * 64), "items[0].sha256"),
    (_set(_item, "sha256", "0" * 65), "items[0].sha256"),
    (_set(_item, "length", -1), "items[0].length"),
    (_set(_item, "length", 1.5), "items[0].length"),
    (_set(_item, "length", True), "items[0].length"),
    (_set(_item, "path", "media/../etc/passwd"), "items[0].path"),
    (_set(_item, "path", "/media/x.mp3"), "items[0].path"),
    (_set(_item, "path", "other/x.mp3"), "items[0].path"),
    (_set(_item, "path", "media/"), "items[0].path"),
    (_set(_item, "path", "media\\..\\x.mp3"), "items[0].path"),
    (_set(_item, "path", "media/x.mp3\n"), "items[0].path"),
    (_set(_item, "profile", "radio"), "items[0].profile"),        # a radio file in a terminal manifest
    (_set(_item, "duration", -1), "items[0].duration"),
    (_set(_item, "duration", "600"), "items[0].duration"),
    (_set(_item, "mandatory", 1), "items[0].mandatory"),
    (_set(_item, "title", ""), "items[0].title"),
    (_set(_item, "valid_from", "tomorrow"), "items[0].valid_from"),
    (_set(_item, "programme", "2025-Q1"), "items[0].programme"),
    (_set(_item, "extra", 1), "items[0].extra"),
    (lambda m: m["items"].__setitem__(0, "item"), "items[0]"),
    (_duplicate_item, "items[2].position"),
    (lambda m: m["items"][1].update(sha256=m["items"][0]["sha256"], length=5), "items[1].length"),
    (_set(lambda m: m["slots"][0], "time", "7:00"), "slots[0].time"),
    (_set(lambda m: m["slots"][0], "kind", "party"), "slots[0].kind"),
    (_set(lambda m: m["slots"][0], "item_position", 3), "slots[0].item_position"),
    (_set(lambda m: m["slots"][0], "programme", "nope"), "slots[0].programme"),
    (_radio_slot, "slots"),
])
def test_parse_refuses_malformed_manifests_naming_the_field(mutate, field):
    m = build()
    mutate(m)
    with pytest.raises(ManifestError) as caught:
        parse_manifest(json.dumps(m).encode())
    assert str(caught.value).startswith(field), str(caught.value)


@pytest.mark.parametrize("data, field", [
    (b"\xff\xfe{}", "manifest"),
    (b"{not json", "manifest"),
    (b"[]", "manifest"),
    (b'{"schema": 1, "schema": 1}', "schema"),
    (b'{"duration": NaN}', "manifest"),
    (b"[" * 100000 + b"]" * 100000, "manifest"),
])
def test_parse_refuses_bytes_that_are_not_a_manifest_object(data, field):
    with pytest.raises(ManifestError, match=f"^{field}"):
        parse_manifest(data)


def test_parse_refuses_non_bytes():
    with pytest.raises(ManifestError):
        parse_manifest(canonical_json(build()).decode())  # type: ignore[arg-type]


def test_media_of_lists_each_file_once():
    m = build(RADIO)
    m["items"][1].update(sha256=m["items"][0]["sha256"], length=m["items"][0]["length"])
    files = media_of(parse_manifest(canonical_json(m)))
    assert sorted(files) == sorted({m["items"][0]["sha256"], m["items"][2]["sha256"]})
    assert files[m["items"][0]["sha256"]].position == 1


def test_diff_from_nothing_downloads_every_file_once():
    m = build(RADIO)
    m["items"][1].update(sha256=m["items"][0]["sha256"], length=m["items"][0]["length"])
    new = parse_manifest(canonical_json(m))
    diff = diff_manifests(None, new)
    assert diff.added == new.items and diff.removed == ()
    assert diff.download_bytes == m["items"][0]["length"] + m["items"][2]["length"]


def test_diff_counts_only_files_the_device_lacks():
    old = parse_manifest(canonical_json(build(RADIO)))
    q4_next = q4()
    items = (q4_next.items[0], Item(2, lesson(5)), q4_next.items[2], Item(4, lesson(2)))  # lesson 2 moves to 4
    changed = Programme(1, "2026-Q4", 3, "Q4", date(2026, 10, 1), date(2026, 12, 31), items)
    new = parse_manifest(canonical_json(build(RADIO, programmes=[changed], version=8)))
    diff = diff_manifests(old, new)
    assert [(i.programme, i.position, i.lesson) for i in diff.added] == [("2026-Q4", 2, 5), ("2026-Q4", 4, 2)]
    assert [(i.programme, i.position, i.lesson) for i in diff.removed] == [("2026-Q4", 2, 2)]
    assert diff.download_bytes == lesson(5).rendition("radio").length  # lesson 2's file is already there


def test_diff_of_identical_manifests_is_empty():
    m = parse_manifest(canonical_json(build()))
    assert diff_manifests(m, m) == type(diff_manifests(m, m))((), (), 0)
