"""Topics: built and parsed in one place, and no id can smuggle a wildcard or a level into a topic."""

from __future__ import annotations

import pytest

from playlists import topics


@pytest.mark.parametrize("build, ident, expected", [
    (topics.config, "r-0001", "lc/v1/devices/r-0001/config"),
    (topics.cmd, "r-0001", "lc/v1/devices/r-0001/cmd"),
    (topics.ack, "r-0001", "lc/v1/devices/r-0001/ack"),
    (topics.events, "term.vil_12", "lc/v1/devices/term.vil_12/events"),
    (topics.status, "T9", "lc/v1/devices/T9/status"),
    (topics.notify, "ch-0123456789abcdef", "lc/v1/channels/ch-0123456789abcdef/notify"),
])
def test_topics_are_built_and_parse_back(build, ident, expected):
    topic = build(ident)
    assert topic == expected
    assert topics.parse(topic) == topics.Topic(kind=build.__name__, id=ident)


@pytest.mark.parametrize("bad_id", ["", "a/b", "+", "#", "dev+1", "dev#", "-leading", ".hidden", "a" * 65, "空格",
                                    "dev 1", "$SYS", None])
@pytest.mark.parametrize("build", [topics.config, topics.cmd, topics.ack, topics.events, topics.status,
                                   topics.notify])
def test_ids_with_wildcards_slashes_or_odd_characters_are_refused(build, bad_id):
    with pytest.raises(ValueError):
        build(bad_id)


def test_the_longest_id_is_allowed():
    assert topics.parse(topics.config("a" * 64)).id == "a" * 64


@pytest.mark.parametrize("topic", [
    "lc/v1/devices/+/events",            # a filter, not a topic
    "lc/v1/devices/#",
    "lc/v1/devices/r-1/#",
    "lc/v1/devices/r-1",
    "lc/v1/devices/r-1/events/extra",
    "lc/v1/devices//events",
    "lc/v2/devices/r-1/events",
    "/lc/v1/devices/r-1/events",
    "lc/v1/devices/r-1/notify",          # notify is a channel topic
    "lc/v1/channels/ch-1/config",        # config is a device topic
    "lc/v1/things/r-1/status",
    "$share/server/lc/v1/devices/r-1/events",
    "",
])
def test_parse_refuses_anything_but_a_lessoncast_topic(topic):
    with pytest.raises(ValueError, match="topic|device|channel"):
        topics.parse(topic)


def test_filters_and_shared_subscriptions():
    assert topics.all_events() == "lc/v1/devices/+/events"
    assert topics.all_status() == "lc/v1/devices/+/status"
    assert topics.shared("ingest", topics.all_events()) == "$share/ingest/lc/v1/devices/+/events"


@pytest.mark.parametrize("group, topic_filter", [
    ("in/gest", "lc/v1/devices/+/events"),
    ("+", "lc/v1/devices/+/events"),
    ("ingest", ""),
    ("ingest", "$share/other/lc/v1/devices/+/events"),
])
def test_shared_refuses_bad_groups_and_filters(group, topic_filter):
    with pytest.raises(ValueError):
        topics.shared(group, topic_filter)
