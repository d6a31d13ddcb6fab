"""Ingest's fast paths, checked against the real thing: the hand-written SQLite rows, the batch splitter, group commit,
ack re-publishing, attendance failures, the retained-message flush, the MQTT loop, fleet columns and the ingest
settings.

The storage tests use a real (temporary) SQLite database through the ``services`` fixture; the MQTT tests a real
Mosquitto through ``broker``. What they guard: rows written through the driver read back exactly as SQLAlchemy would
have written them, each event's original JSON text is what is stored, one device's bad batch never holds another
device's batch back, and a device that missed its ack gets it again.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update

from playlists import topics
from server import settings as settings_mod
from server.attendance import fold as attendance
from server.attendance.models import AttendanceExclusion, LessonCoverage
from server.cli.stack import _ingest_children
from server.devices import registry as devices
from server.events import ingest as ingest_mod
from server.events.batches import parse_batch, split_batch
from server.events.ingest import Incoming, fleet_columns, store_batch, store_batches, store_status
from server.events.ingest_loop import Ingest
from server.events.models import DeviceEvent, DeviceSequence, DeviceStatus, QuarantinedBatch
from server.messaging import retained
from server.messaging.broker import SERVER_USER, server_password
from server.messaging.models import RetainedMessage
from server.messaging.mqtt_link import BrokerAddress, ServerLink
from tests import attendance_data as county_data
from tests.mqtt_client import MqttProbe

UTC = timezone.utc
BEIJING = timezone(timedelta(hours=8))
T_ENROL = datetime(2026, 9, 1, tzinfo=UTC)
T0 = datetime(2026, 10, 3, 12, 0, 0, tzinfo=UTC)


# --- helpers --------------------------------------------------------------------------------------------------------


def _props(device: str, first: int, last: int, epoch: int | None = 1) -> dict[str, str]:
    props = {"device": device, "seq": f"{first}-{last}"}
    if epoch is not None:
        props["epoch"] = str(epoch)
    return props


def _event(seq: int, **extra) -> dict:
    return {"id": str(uuid.uuid4()), "seq": seq, "type": "note", **extra}


def _batch(device: str, events: list[dict], epoch: int = 1) -> bytes:
    return json.dumps({"device": device, "epoch": epoch, "events": events}).encode()


def _incoming(device: str, events: list[dict], at: datetime = T0) -> Incoming:
    first, last = events[0]["seq"], max(e.get("seq_last", e["seq"]) for e in events)
    return Incoming(device, _props(device, first, last), _batch(device, events), at)


def _count(services, model, **where) -> int:
    with services.db.session() as session:
        return session.scalar(select(func.count()).select_from(model).filter_by(**where))


def _sequence(services, device: str, epoch: int = 1) -> DeviceSequence:
    with services.db.session() as session:
        return session.get(DeviceSequence, (device, epoch))


def _ack_row(services, device: str) -> RetainedMessage:
    with services.db.session() as session:
        return session.get(RetainedMessage, topics.ack(device))


def _mark_sent(services, device: str) -> None:
    """What a successful flush does to the device's ack row: the broker has its current version."""
    with services.db.session() as session:
        session.execute(update(RetainedMessage).where(RetainedMessage.topic == topics.ack(device))
                        .values(sent_version=RetainedMessage.version))


@pytest.fixture
def radios(services, enrolled):
    """enrol(n) -> n enrolled radios' uids, enrolled at T_ENROL (so events of October are not before enrolment)."""

    def enrol(n: int = 1) -> list[str]:
        services.clock = lambda: T_ENROL
        return [enrolled("radio", name=f"radio {i}")["device"] for i in range(n)]

    return enrol


# --- 1. raw storage round trip ----------------------------------------------------------------------------------


def test_stored_rows_keep_the_sent_text_and_compare_like_sqlalchemy_rows(services, radios):
    (device,) = radios(1)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    # Hand-written JSON: odd spacing, raw non-ASCII, escapes, a number spelt 2.50; what is stored is this text.
    texts = [
        '{ "id" : "%s",\n\t"seq":1 , "type":"play", "note":"王大爷的收音机 – ünïcode", '
        '"device_time":"2026-10-03T19:22:30.123456+08:00", "nested": {"a": [1, 2.50, true, null, "\\""]} }' % ids[0],
        '{"id":"%s","seq":2,"type":"checkin","msg":"\\u4e2d\\u6587 \\ud83d\\ude00",'
        '"device_time":"2026-10-03T11:22:31Z"}' % ids[1],
        '{"seq":3,"type":"error","id":"%s",   "empty":{} ,"list":[ ]}' % ids[2].upper(),
    ]
    payload = ('\r\n{\n  "device" : "%s" ,\r\n "epoch":1,\t"events" : [ %s ,\n %s,%s ] \n}\n'
               % (device, *texts)).encode("utf-8")
    assert store_batch(services, device, _props(device, 1, 3), payload, T0) == (1, 3)

    with services.db.session() as session:
        rows = session.scalars(select(DeviceEvent).order_by(DeviceEvent.seq)).all()
        assert [r.body for r in rows] == [json.loads(t) for t in texts]
        assert rows[0].body["nested"]["a"][1] == 2.5 and rows[1].body["msg"] == "中文 😀"
        assert [r.event_id for r in rows] == [ids[0], ids[1], ids[2].lower()]
        assert [r.type for r in rows] == ["play", "checkin", "error"]
        assert rows[0].device_time == datetime(2026, 10, 3, 11, 22, 30, 123456, tzinfo=UTC)
        assert rows[1].device_time == datetime(2026, 10, 3, 11, 22, 31, tzinfo=UTC)
        assert rows[2].device_time is None
        assert all(r.received_at == T0 and r.received_at.tzinfo is not None for r in rows)
        assert [(r.at, r.clock_flag) for r in rows] == [(rows[0].device_time, None), (rows[1].device_time, None),
                                                        (T0, "no_time")]

        raw = session.execute(text("SELECT body, received_at, device_time, at FROM device_events ORDER BY seq")).all()
        assert [r[0] for r in raw] == texts, "each event's JSON is stored exactly as the device sent it"
        # The driver rows' times are spelt exactly as SQLAlchemy spells them (its insert of the sequence row).
        written_by_sqlalchemy = session.execute(text("SELECT updated_at FROM device_sequences")).scalar_one()
        assert raw[0][1] == written_by_sqlalchemy == "2026-10-03 12:00:00.000000"
        assert raw[0][2] == "2026-10-03 11:22:30.123456" and raw[1][2] == "2026-10-03 11:22:31.000000"

        # Compared and sorted in SQL against aware datetimes (any offset) and against rows SQLAlchemy wrote.
        def seqs(*where):
            return session.scalars(select(DeviceEvent.seq).where(*where).order_by(DeviceEvent.seq)).all()

        assert seqs(DeviceEvent.received_at >= T0.astimezone(BEIJING)) == [1, 2, 3]
        assert seqs(DeviceEvent.received_at > T0) == []
        assert seqs(DeviceEvent.received_at == T0) == [1, 2, 3]
        assert seqs(DeviceEvent.device_time == datetime(2026, 10, 3, 19, 22, 30, 123456, tzinfo=BEIJING)) == [1]
        assert seqs(DeviceEvent.device_time > datetime(2026, 10, 3, 11, 22, 30, 123456, tzinfo=UTC)) == [2]
        assert seqs(DeviceEvent.at < T0) == [1, 2]
        session.add(DeviceEvent(device_uid=device, epoch=2, seq=1, seq_last=1, event_id=str(uuid.uuid4()),
                                type="note", body={}, device_time=datetime(2026, 10, 3, 11, 22, 30, 500000, tzinfo=UTC),
                                received_at=T0 - timedelta(microseconds=1), at=T0, clock_flag=None))
        session.flush()
        by_device_time = session.execute(select(DeviceEvent.epoch, DeviceEvent.seq)
                                         .where(DeviceEvent.device_time.is_not(None))
                                         .order_by(DeviceEvent.device_time)).all()
        assert by_device_time == [(1, 1), (2, 1), (1, 2)]
        assert session.scalars(select(DeviceEvent.epoch).order_by(DeviceEvent.received_at, DeviceEvent.id)).all() \
            == [2, 1, 1, 1]
        assert seqs(DeviceEvent.received_at >= T0, DeviceEvent.epoch == 2) == []

    # And straight from the file, with the sqlite3 module: the same bytes.
    path = Path(services.settings.db_url.removeprefix("sqlite:///"))
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT body FROM device_events WHERE seq = 1 AND epoch = 1").fetchone()[0] == texts[0]


# --- 2. the batch splitter against hostile payloads --------------------------------------------------------------

DEV = "r-hostile"
EV1 = '{"id":"0f8fad5b-d9cb-469f-a165-70867728950e","seq":1,"type":"play"}'
EV2 = '{"id":"7c9e6679-7425-40de-944b-e07fc1f90ae7","seq":2,"type":"play","x":[1,{"y":"z"}]}'


def _doc(events: str = f"[{EV1},{EV2}]", before: str = "", after: str = "") -> bytes:
    return f'{{{before}"device":"{DEV}","epoch":1,"events":{events}{after}}}'.encode()


DEEP = "[" * 5000 + "]" * 5000
HOSTILE = [
    # (what, payload, None when it parses or the start of parse_batch's ValueError)
    ("whitespace and newlines everywhere", f' \r\n\t{{ \n"device" :\t"{DEV}" ,\r\n "epoch" : 1 , "events" :\n[ \n'
     f'{EV1} ,\n\t{EV2}\n] \n}} \n\t'.encode(), None),
    ("unicode escapes in keys and values",
     b'{"dev\\u0069ce":"r-\\u0068ostile","epoch":1,"\\u0065vents":[{"id":"0f8fad5b-d9cb-469f-a165-70867728950e",'
     b'"seq":1,"type":"pl\\u0061y","n":"\\u4e2d\\ud83d\\ude00"}]}', None),
    ("raw non-ASCII", _doc('[{"id":"0f8fad5b-d9cb-469f-a165-70867728950e","seq":1,"type":"播放"}]'), None),
    ("an empty object inside", _doc(after=',"extra":{}'), None),
    ("duplicate top-level key", _doc(after=f',"device":"{DEV}"'), "batch: key 'device' appears twice"),
    ("duplicate key spelt with an escape", _doc(after=f',"dev\\u0069ce":"{DEV}"'), "batch: key 'device' appears twice"),
    ("duplicate events", _doc(after=f',"events":[{EV1}]'), "batch: key 'events' appears twice"),
    ("NaN inside an event", _doc('[{"id":"x","seq":1,"v":NaN}]'), "batch: NaN is not a JSON number"),
    ("Infinity inside an event", _doc('[{"seq":1,"v":[Infinity]}]'), "batch: Infinity is not a JSON number"),
    ("-Infinity inside an event", _doc('[{"seq":1,"v":-Infinity}]'), "batch: -Infinity is not a JSON number"),
    ("NaN outside the events", _doc(after=',"x":NaN'), "batch: NaN is not a JSON number"),
    ("trailing garbage", _doc() + b" x", "batch: not JSON: extra data"),
    ("two documents", _doc() + _doc(), "batch: not JSON: extra data"),
    ("trailing comma in the events", _doc(f"[{EV1},]"), "batch: not JSON"),
    ("trailing comma in the object", _doc(after=","), "batch: not JSON"),
    ("a key without a value", f'{{"device":"{DEV}","epoch"}}'.encode(), "batch: not JSON"),
    ("a key that is not a string", b'{1: 2}', "batch: not JSON"),
    ("unterminated", _doc()[:-1], "batch: not JSON"),
    ("unterminated events", _doc(f"[{EV1}"), "batch: not JSON"),
    ("a list", b"[]", "batch: not JSON"),
    ("a string", b'"batch"', "batch: not JSON"),
    ("a number", b"42", "batch: not JSON"),
    ("null", b"null", "batch: not JSON"),
    ("nothing", b"", "batch: not JSON"),
    ("only whitespace", b" \n ", "batch: not JSON"),
    ("a byte order mark", "\ufeff".encode() + _doc(), "batch: not JSON"),
    ("deeply nested inside an event", _doc(f'[{{"seq":1,"x":{DEEP}}}]'), "batch: not JSON (nested too deeply)"),
    ("deeply nested events", _doc(f"[{DEEP}]"), "batch: not JSON (nested too deeply)"),
    ("deeply nested elsewhere", _doc(after=f',"x":{DEEP}'), "batch: not JSON (nested too deeply)"),
    ("invalid UTF-8", b"\xff\xfe{}", "batch: not UTF-8 JSON"),
    ("a truncated UTF-8 sequence in a string", _doc(after=',"x":"Q"').replace(b'"Q"', b'"\xc3"'),
     "batch: not UTF-8 JSON"),
    ("an encoded surrogate", _doc().replace(b"r-hostile", b"r-\xed\xa0\x80"), "batch: not UTF-8 JSON"),
    ("an overlong encoding", _doc().replace(b"r-hostile", b"r-\xc0\xaf"), "batch: not UTF-8 JSON"),
    ("a number too long to convert", _doc(f'[{{"seq":1,"n":{"9" * 5000}}}]'), "batch: not JSON"),
    ("an empty events list", _doc("[]"), "batch.events: not a non-empty list"),
    ("an empty events list with spaces", _doc("[ \n ]"), "batch.events: not a non-empty list"),
    ("events an object", _doc("{}"), "batch.events: not a non-empty list"),
    ("events a string", _doc('"[]"'), "batch.events: not a non-empty list"),
    ("events null", _doc("null"), "batch.events: not a non-empty list"),
    ("no events", f'{{"device":"{DEV}","epoch":1}}'.encode(), "batch.events: not a non-empty list"),
    ("an event that is not an object", _doc(f"[{EV1},1]"), "batch.events[1]: int given"),
    ("an event beyond the range", _doc(f'[{EV1.replace(":1,", ":9,")}]'), "batch.events[0]: seq 9-9 is outside"),
    ("another device's batch", _doc().replace(b"r-hostile", b"r-other"), "batch.device"),
    ("an epoch spelt as a string", _doc().replace(b'"epoch":1', b'"epoch":"1"'), "batch.epoch"),
    ("an epoch spelt as true", _doc().replace(b'"epoch":1', b'"epoch":true'), "batch.epoch"),
]


@pytest.mark.parametrize("what, payload, error", HOSTILE, ids=[row[0] for row in HOSTILE])
def test_hostile_batches_parse_or_fail_with_a_batch_error(what, payload, error):
    try:
        events = parse_batch(DEV, _props(DEV, 1, 5), payload, 1, 1, 5)
    except ValueError as exc:
        assert error is not None, f"{what}: refused ({exc})"
        assert str(exc).startswith("batch"), f"{what}: {exc}"
        assert str(exc).startswith(error), f"{what}: {exc}"
        return
    assert error is None, f"{what}: parsed, {error!r} expected"
    # Each event keeps the exact text it was read from, and that text is the event.
    top, texts = split_batch(payload)
    assert [t for _v, t in texts] == [e.text for e in events]
    for event in events:
        assert event.text in payload.decode() and json.loads(event.text) == event.body
    assert top["events"] == [e.body for e in events]


def test_split_batch_keeps_each_events_text_and_decodes_escapes():
    top, events = split_batch(HOSTILE[1][1])
    assert top["device"] == "r-hostile" and events[0][0]["type"] == "play" and events[0][0]["n"] == "中😀"
    assert events[0][1].startswith('{"id"') and "\\ud83d\\ude00" in events[0][1]
    top, events = split_batch(_doc("[]"))
    assert events == [] and top["events"] == []
    top, events = split_batch(_doc("{}"))
    assert events is None and top["events"] == {}


def _agent_batch(events: list[dict], device: str = DEV) -> bytes:
    """A batch as the agent writes it (device_agent/agent.py)."""
    return json.dumps({"device": device, "epoch": 1, "events": events}, ensure_ascii=False,
                      separators=(",", ":")).encode()


_PLAY = {"type": "play", "phase": "progress", "play_id": "p1", "programme": "2026-Q4", "lesson": 3,
         "start_position": 30.0, "end_position": 60.5, "listened_seconds": 30.5, "volume": 70, "muted": False,
         "device_time": "2026-11-02T08:00:00.123456+00:00", "clock_offset": -0.25}
AGENT_FORM = [
    # (what, events): each is sent as the agent writes it, json.dumps without spaces
    ("plays", [{**_PLAY, "id": str(uuid.UUID(int=n)), "seq": n} for n in range(1, 201)]),
    ("Chinese, escapes and a closing brace in strings",
     [{"id": str(uuid.UUID(int=1)), "seq": 1, "type": "note", "s": '党课 \u2028 \x01 " \\ },{ }', "t": "😀"}]),
    ("a list of objects inside an event", [{"id": str(uuid.UUID(int=1)), "seq": 1, "type": "x", "l": [{"a": 1}, {"b": 2}]},
                                           {"id": str(uuid.UUID(int=2)), "seq": 2, "type": "x"}]),
    ("integers beyond 64 bits", [{"id": str(uuid.UUID(int=1)), "seq": 1, "type": "x", "n": 2**64, "m": -2**63 - 1,
                                  "k": 10**40}]),
    ("floats Python and orjson write differently", [{"id": str(uuid.UUID(int=1)), "seq": 1, "type": "x",
                                                      "f": [1e-05, 1e16, 1.5e300, -0.0, 5e-324]}]),
    ("the largest integers orjson keeps", [{"id": str(uuid.UUID(int=1)), "seq": 1, "type": "x", "n": 2**64 - 1,
                                            "m": -2**63}]),
    ("an event that is not an object, before one holding objects", [1, {"x": [{}, {}]}]),
    ("an event with a field named events", [{"id": str(uuid.UUID(int=1)), "seq": 1, "type": "summary", "events": 3}]),
    ("nested a little", [{"id": str(uuid.UUID(int=1)), "seq": 1, "type": "x", "d": json.loads("[" * 50 + "]" * 50)}]),
    ("nested beyond orjson's depth", [{"id": str(uuid.UUID(int=1)), "seq": 1, "type": "x",
                                       "d": json.loads("[" * 500 + "]" * 500)}]),
]


@pytest.mark.parametrize("what, events", AGENT_FORM, ids=[row[0] for row in AGENT_FORM])
def test_a_batch_as_the_agent_writes_it_gives_the_strict_decoders_answer(what, events, monkeypatch):
    """The agent's batches are decoded with orjson, checked by encoding them again (server/events/batches.py):
    whatever that path answers is what the strict decoder answers, text for text, or the strict decoder decides."""
    from server.events import batches

    payload = _agent_batch(events)
    fast = batches._split_agent_batch(payload)
    monkeypatch.setattr(batches, "_split_agent_batch", lambda _payload: None)
    strict = batches.split_batch(payload)
    if fast is not None:
        assert fast == strict, what
        assert [type(v) for v, _t in fast[1]] == [type(v) for v, _t in strict[1]]
        assert ",".join(t for _v, t in fast[1]).encode() in payload
    assert strict[0]["events"] == events and [json.loads(t) for _v, t in strict[1]] == events
    if what in ("plays", "Chinese, escapes and a closing brace in strings", "a list of objects inside an event",
                "the largest integers orjson keeps", "nested a little", "an event with a field named events"):
        assert fast is not None, f"{what}: the agent's own batches take the fast path"
    if what in ("integers beyond 64 bits", "floats Python and orjson write differently", "nested beyond orjson's depth"):
        assert fast is None, f"{what}: orjson would not give the text back, so the strict decoder answers"


@pytest.mark.parametrize("what, payload, error", HOSTILE, ids=[row[0] for row in HOSTILE])
def test_no_hostile_batch_gets_another_answer_from_the_fast_path(what, payload, error, monkeypatch):
    from server.events import batches

    fast = batches._split_agent_batch(payload)
    if fast is None:
        return
    monkeypatch.setattr(batches, "_split_agent_batch", lambda _payload: None)
    assert fast == batches.split_batch(payload), what


@pytest.mark.parametrize("number", ["1e999", "-1E+400", "2.5e0309", "1e400", "1" + "0" * 400 + ".5"])
@pytest.mark.parametrize("where", ['{"x":%s}', '{"x":[1, %s]}', '{"x": \n %s}'])
def test_a_number_too_large_for_a_float_is_refused_wherever_it_is(number, where):
    # Every number with a fraction or an exponent is checked, also one with 400 digits before its point and no
    # exponent; text that only looks like a big number (event ids full of "4e123", a string) is left alone.
    event = where % number
    payload = ('{"device":"d","epoch":1,"events":[%s]}' % event).encode()
    with pytest.raises(ValueError, match="too large for a number"):
        split_batch(payload)
    plain = '{"id":"4e123456-1e99-4e10-8e55-0e1234567890","x":1e300,"y":"a,1e999"}'
    _top, events = split_batch(('{"device":"d","epoch":1,"events":[%s]}' % plain).encode())
    assert events[0][0]["x"] == 1e300 and events[0][0]["y"] == "a,1e999" and events[0][1] == plain


def test_a_bad_batch_is_quarantined_beside_a_good_batch_of_another_device(services, radios):
    bad_device, good_device = radios(2)
    bad = f'{{"device":"{bad_device}","device":"{bad_device}","epoch":1,"events":[{EV1}]}}'.encode()
    good = [_event(1), _event(2)]
    results = store_batches(services, [Incoming(bad_device, _props(bad_device, 1, 4), bad, T0),
                                       _incoming(good_device, good)])
    assert (results[0].acked, results[0].quarantined, results[0].inserted) == (4, True, 0)
    assert (results[1].acked, results[1].quarantined, results[1].inserted) == (2, False, 2)
    with services.db.session() as session:
        quarantined = session.scalars(select(QuarantinedBatch)).one()
        assert (quarantined.device_uid, quarantined.seq_first, quarantined.seq_last) == (bad_device, 1, 4)
        assert quarantined.payload == bad and quarantined.reason.startswith("batch: key 'device' appears twice")
        assert session.scalars(select(DeviceEvent.device_uid).distinct()).all() == [good_device]
        assert session.get(RetainedMessage, topics.ack(bad_device)).payload == b'{"epoch":1,"seq":4}'
        assert session.get(RetainedMessage, topics.ack(good_device)).payload == b'{"epoch":1,"seq":2}'
    assert _sequence(services, bad_device).quarantined == 1


def test_an_impossible_device_clock_does_not_block_the_batch(services, radios):
    # A device time within a day of year 1 or 9999 has no UTC instant: it counts as no device time.
    (device,) = radios(1)
    events = [_event(1, device_time="0001-01-01T00:00:00+01:00"), _event(2, device_time="9999-12-31T23:59:59-01:00"),
              _event(3, device_time="2026-10-03T11:00:00Z")]
    assert store_batch(services, device, _props(device, 1, 3), _batch(device, events), T0) == (1, 3)
    with services.db.session() as session:
        rows = session.execute(select(DeviceEvent.device_time, DeviceEvent.at, DeviceEvent.clock_flag)
                               .order_by(DeviceEvent.seq)).all()
    assert rows == [(None, T0, "no_time"), (None, T0, "no_time"),
                    (datetime(2026, 10, 3, 11, tzinfo=UTC), datetime(2026, 10, 3, 11, tzinfo=UTC), None)]


def test_an_event_type_that_is_not_text_is_quarantined(services, radios):
    # A lone surrogate escape decodes to a str that no database column can hold.
    (device,) = radios(1)
    payload = ('{"device":"%s","epoch":1,"events":[{"id":"%s","seq":1,"type":"\\ud800"}]}'
               % (device, uuid.uuid4())).encode()
    assert store_batch(services, device, _props(device, 1, 1), payload, T0) == (1, 1)
    with services.db.session() as session:
        assert "type" in session.scalars(select(QuarantinedBatch.reason)).one()
    assert _count(services, DeviceEvent) == 0


# --- 3. group commit ---------------------------------------------------------------------------------------------


def test_store_batches_stores_a_group_and_answers_in_input_order(services, radios):
    first, second, revoked = radios(3)
    devices.revoke(services, revoked, "test", "lost at sea")
    later_of_first = [_event(3), _event(4)]
    batches = [
        _incoming(first, later_of_first),                        # stored after the one below: the group is sorted
        _incoming(second, [_event(1), _event(2), _event(3)]),
        _incoming(revoked, [_event(1)]),
        _incoming(first, [_event(1), _event(2)]),
        Incoming(second, {"device": second, "seq": "4-4"}, _batch(second, [_event(4)]), T0),  # no epoch
        Incoming(second, {"device": second, "epoch": "1"}, _batch(second, [_event(5)]), T0),  # no range
    ]
    results = store_batches(services, batches)
    assert len(results) == len(batches)
    summary = [None if r is None else (r.epoch, r.acked, r.inserted, r.duplicates, r.quarantined) for r in results]
    assert summary == [(1, 4, 2, 0, False), (1, 3, 3, 0, False), (1, 1, 0, 0, True), (1, 2, 2, 0, False), None, None]

    rejected = _sequence(services, revoked)
    assert (rejected.rejected, rejected.quarantined, rejected.events, rejected.acked) == (1, 0, 0, 1)
    assert (_sequence(services, first).events, _sequence(services, second).events) == (4, 3)
    assert _count(services, DeviceEvent, device_uid=first) == 4
    assert _count(services, DeviceEvent, device_uid=second) == 3, "the batches without a range are stored nowhere"
    assert _count(services, DeviceEvent, device_uid=revoked) == 0
    with services.db.session() as session:
        assert "not enrolled" in session.scalars(select(QuarantinedBatch.reason)).one()
        acks = {row.topic: row.payload for row in session.scalars(select(RetainedMessage)
                                                                   .where(RetainedMessage.topic.like("%/ack")))}
    assert acks == {topics.ack(first): b'{"epoch":1,"seq":4}', topics.ack(second): b'{"epoch":1,"seq":3}',
                    topics.ack(revoked): b'{"epoch":1,"seq":1}'}

    # Sent again together, nothing is stored twice and every answer says so.
    again = store_batches(services, batches[:4])
    assert [(r.acked, r.inserted, r.duplicates) for r in again] == [(4, 0, 2), (3, 0, 3), (1, 0, 0), (4, 0, 2)]
    assert _count(services, DeviceEvent) == 7 and _sequence(services, revoked).rejected == 2


def test_a_batch_without_its_range_properties_is_dropped(services, radios):
    (device,) = radios(1)
    assert store_batch(services, device, {"device": device, "seq": "1-1"}, _batch(device, [_event(1)]), T0) is None
    assert store_batch(services, device, {"device": device, "epoch": "1", "seq": "2-1"},
                       _batch(device, [_event(1)]), T0) is None
    assert store_batches(services, []) == []
    assert _count(services, DeviceEvent) == 0 and _count(services, QuarantinedBatch) == 0
    assert _sequence(services, device) is None and _ack_row(services, device) is None


def test_a_group_of_many_batches_is_written_in_a_fixed_number_of_statements(services):
    """Group commit pays per group, not per batch: twelve batches of four radios (plays folded into attendance) are
    written in one transaction with as many statements as four batches of the same radios. Before, each batch ran
    its own sequence-row insert and select, enrolment check, events insert, coverage upsert, read and update, and
    ack read: about ten statements a batch. Each group's plays complete a lesson (a new one each round), so each
    group also moves the change mark of the day they completed it on: one more statement, whatever the batches."""
    from sqlalchemy import event

    county = county_data.build_county(services, townships=1, sites_per_township=1, members_per_site=4,
                                      radios_per_site=4, lessons=3, durations=(130.0,))
    radios = [uid for uid, _member in county.radios]
    at = datetime(2026, 10, 2, 9, 0, tzinfo=UTC)
    lookups = attendance.Lookups(ttl_s=3600.0)  # warm, as a running ingest's: only the write transaction is counted
    statements: list[str] = []
    commits: list[int] = []

    marked: list[str] = []

    def count(_conn, _cursor, statement, _parameters, _context, _executemany):
        statements.append(statement.split()[0].upper())
        if "attendance_marks" in statement:
            marked.append(statement)

    def committed(_conn):
        commits.append(1)

    def group(round_: int, per_radio: int) -> list[Incoming]:
        out = []
        for n in range(per_radio):
            seq = 1 + 2 * (round_ + n)  # each radio's batches follow on: 1-2, then 3-4, then 5-6, 7-8, 9-10
            plays = _plays(county, seq, at + timedelta(days=round_, minutes=10 * n), 0.0, 100.0, lesson=round_)
            out += [Incoming(uid, _props(uid, seq, seq + 1), _batch(uid, plays), at + timedelta(days=60))
                    for uid in radios]
        return out

    store_batches(services, group(0, 1), lookups)  # first batches: the caches fill, the ack rows are made
    measured = {}
    for round_, per_radio in ((1, 1), (2, 3)):
        batches = group(round_, per_radio)
        statements.clear()
        commits.clear()
        marked.clear()
        event.listen(services.db.engine, "before_cursor_execute", count)
        event.listen(services.db.engine, "commit", committed)
        try:
            results = store_batches(services, batches, lookups)
        finally:
            event.remove(services.db.engine, "before_cursor_execute", count)
            event.remove(services.db.engine, "commit", committed)
        assert all(r is not None and r.inserted == 2 and r.duplicates == 0 for r in results)
        assert len(commits) == 1, "one write transaction for the group"
        assert len(marked) == 1, "the day marks are moved in one statement"
        measured[len(batches)] = (len(statements), list(statements))
    few, many = measured[4][0], measured[12][0]
    assert many == few, f"12 batches took {many} statements, 4 took {few}: {measured[12][1]}"
    # 16 writing the events and the attendance, plus 1: the change marks of the days lessons were completed on
    # (server/attendance/marks.py; what the dashboard's kept reports' fingerprints read)
    assert many <= 17, measured[12][1]

    with services.db.session() as session:
        assert session.scalar(select(func.count()).select_from(DeviceEvent)) == 2 * 4 * 5
        assert sum(session.scalars(select(DeviceSequence.events))) == 2 * 4 * 5, "each event counted once"
        assert session.scalar(select(func.sum(LessonCoverage.events))) == 2 * 4 * 5
        acks = {row.topic: row.payload for row in session.scalars(
            select(RetainedMessage).where(RetainedMessage.topic.in_([topics.ack(uid) for uid in radios])))}
    assert acks == {topics.ack(uid): b'{"epoch":1,"seq":10}' for uid in radios}


def test_a_batch_after_a_later_one_of_its_device_looks_up_no_ids_unless_it_is_a_resend(services, radios):
    """Two ingest processes share each device's batches, so batch 1 often arrives after batch 2 was stored. Its
    sequence numbers are not stored, so it cannot hold a stored event: one probe of the seq index says so, where
    before each such batch looked up its event ids. A resend of stored events still does, and counts them once."""
    from sqlalchemy import event

    [radio] = radios(1)
    first, second = [_event(1), _event(2)], [_event(3), _event(4)]
    store_batches(services, [_incoming(radio, second)])
    statements: list[str] = []

    def count(_conn, _cursor, statement, _parameters, _context, _executemany):
        statements.append(statement)

    def stored_ids_looked_up() -> int:
        return sum(1 for s in statements if "device_events.event_id IN" in s.replace('"', ""))

    event.listen(services.db.engine, "before_cursor_execute", count)
    try:
        [early] = store_batches(services, [_incoming(radio, first)])
        assert (early.inserted, early.duplicates, early.acked) == (2, 0, 4)
        assert stored_ids_looked_up() == 0, statements
        statements.clear()
        [again] = store_batches(services, [_incoming(radio, first + second)])
        assert (again.inserted, again.duplicates, again.acked) == (0, 4, 4)
        assert stored_ids_looked_up() == 1
    finally:
        event.remove(services.db.engine, "before_cursor_execute", count)
    assert _count(services, DeviceEvent, device_uid=radio) == 4


# --- 4. re-publishing an ack -------------------------------------------------------------------------------------


def test_a_pure_resend_publishes_the_ack_again_but_a_batch_beyond_a_gap_does_not(services, radios):
    (device,) = radios(1)
    events = [_event(seq) for seq in range(1, 7)]

    def send(*seqs):
        return store_batch(services, device, _props(device, seqs[0], seqs[-1]),
                           _batch(device, [events[s - 1] for s in seqs]), T0)

    def versions():
        row = _ack_row(services, device)
        return row.version, row.sent_version, row.payload

    assert send(1, 2, 3) == (1, 3)
    version = versions()[0]
    _mark_sent(services, device)
    assert versions() == (version, version, b'{"epoch":1,"seq":3}')

    assert send(1, 2, 3) == (1, 3), "a pure duplicate"
    assert versions() == (version + 1, version, b'{"epoch":1,"seq":3}'), "unsent again: the broker sends it anew"
    assert send(2, 3) == (1, 3), "again, before the flush"
    assert versions() == (version + 1, version, b'{"epoch":1,"seq":3}'), "already pending: no new version"
    assert _count(services, DeviceEvent) == 3 and _sequence(services, device).duplicates == 5

    _mark_sent(services, device)
    assert send(5, 6) == (1, 3), "beyond the gap at 4: stored, not acked"
    assert versions() == (version + 1, version + 1, b'{"epoch":1,"seq":3}'), "no re-publish for a batch that waits"
    assert send(5, 6) == (1, 3), "a resend beyond the gap"
    assert versions() == (version + 1, version + 1, b'{"epoch":1,"seq":3}')

    assert send(4) == (1, 6), "the gap filled"
    assert versions() == (version + 2, version + 1, b'{"epoch":1,"seq":6}')
    _mark_sent(services, device)
    assert send(5, 6) == (1, 6), "now a pure duplicate"
    assert versions() == (version + 3, version + 2, b'{"epoch":1,"seq":6}')
    assert _count(services, DeviceEvent) == 6


# --- 5. attendance failures --------------------------------------------------------------------------------------


@pytest.fixture
def small_county(services):
    return county_data.build_county(services, townships=1, sites_per_township=1, members_per_site=2,
                                    radios_per_site=1, lessons=1, durations=(600.0,))


def _coverage(services) -> list[tuple[int, float]]:
    with services.db.session() as session:
        return session.execute(select(LessonCoverage.member_id, LessonCoverage.covered_s)).all()


def _exclusions(services) -> dict[str, int]:
    with services.db.session() as session:
        return dict(session.execute(select(AttendanceExclusion.reason, AttendanceExclusion.events)).all())


def _plays(county, first_seq: int, at: datetime, start: float, end: float, lesson: int = 0) -> list[dict]:
    lesson, sha, _duration = county.lessons[lesson]
    return county_data.numbered([county_data.play(at, county.programme, lesson, sha, start, end)], first_seq) + \
        county_data.numbered([county_data.play(at + timedelta(minutes=1), county.programme, lesson, sha, end,
                                               end + 30)], first_seq + 1)


@pytest.mark.parametrize("broken", ["fold_batch", "write_many"])
def test_an_attendance_failure_keeps_the_events_and_the_ack(services, small_county, monkeypatch, broken):
    device, member = small_county.radios[0]
    at = datetime(2026, 10, 2, 9, 0, tzinfo=UTC)
    real_write = attendance.write_many

    def write_then_fail(session, deltas, rules):
        real_write(session, deltas, rules)  # written, then rolled back with the savepoint
        if any(delta.coverage for _device, delta in deltas):
            raise ValueError("unforeseen data")

    def fold_fails(*_args, **_kw):
        raise ValueError("unforeseen data")

    monkeypatch.setattr(attendance, broken, fold_fails if broken == "fold_batch" else write_then_fail)
    bad = _plays(small_county, 1, at, 0.0, 120.0)
    assert store_batch(services, device, _props(device, 1, 2), _batch(device, bad), at + timedelta(hours=1)) == (1, 2)
    assert _count(services, DeviceEvent, device_uid=device) == 2, "the events are stored"
    assert _exclusions(services) == {"attendance_error": 2}
    assert _coverage(services) == [], "nothing half-written"
    assert _ack_row(services, device).payload == b'{"epoch":1,"seq":2}'

    monkeypatch.undo()
    good = _plays(small_county, 3, at + timedelta(hours=2), 200.0, 300.0)
    assert store_batch(services, device, _props(device, 3, 4), _batch(device, good), at + timedelta(hours=3)) == (1, 4)
    assert _coverage(services) == [(member, 130.0)]
    assert _exclusions(services) == {"attendance_error": 2}
    assert _sequence(services, device).events == 4


# --- 6. retained.flush against a real broker ---------------------------------------------------------------------


def _server_probe(services, name: str) -> MqttProbe:
    return MqttProbe(services.settings.mqtt_server_port, SERVER_USER, server_password(services), name).connect()


def test_flush_publishes_every_pending_row_and_keeps_a_changed_one_unsent(broker, monkeypatch):
    services = broker
    retained.flush(services)  # what enrolment and initialisation left pending
    names = [f"r-flush-{n:03d}" for n in range(12)]
    with services.db.session() as session:
        for n, name in enumerate(names):
            retained.put(session, topics.ack(name), json.dumps({"epoch": 1, "seq": n}).encode(), T0)
        assert retained.pending(session) == 12

    calls: list[list[str]] = []
    real_publish_many = ServerLink.publish_many
    changed = topics.ack(names[5])

    def publish_then_change_one(self, messages, *, retain=False):
        calls.append([topic for topic, _payload in messages])
        real_publish_many(self, messages, retain=retain)
        if len(calls) == 1:  # a new ack is committed while the broker acknowledges the old one
            with services.db.session() as session:
                retained.put(session, changed, b'{"epoch":1,"seq":99}', T0)

    monkeypatch.setattr(ServerLink, "publish_many", publish_then_change_one)
    link = ServerLink(BrokerAddress.from_services(services), "test-flush").connect()
    try:
        with services.db.session() as session:  # the first pass alone: the changed row stays unsent
            rows = session.execute(select(RetainedMessage.topic, RetainedMessage.payload, RetainedMessage.version)
                                   .where(RetainedMessage.sent_version < RetainedMessage.version)
                                   .order_by(RetainedMessage.topic)).all()
        with services.db.session() as session:
            retained._send_and_mark(session, link, rows)
        assert calls == [sorted(topics.ack(n) for n in names)], "all in one publish_many"
        with services.db.session() as session:
            pending = session.scalars(select(RetainedMessage.topic)
                                      .where(RetainedMessage.sent_version < RetainedMessage.version)).all()
        assert pending == [changed]
        assert retained.flush(services, link) == 1, "the next flush sends the newer version"
        assert calls[1:] == [[changed]]
        assert retained.flush(services, link) == 0
    finally:
        link.close()

    late = _server_probe(services, "late-reader")
    try:
        for name in names:
            late.subscribe(topics.ack(name))
        for n, name in enumerate(names):
            expected = b'{"epoch":1,"seq":99}' if topics.ack(name) == changed else \
                json.dumps({"epoch": 1, "seq": n}).encode()
            message = late.wait_for_payload(topics.ack(name), lambda p, e=expected: p == e)
            assert message.retain, "the broker kept it for devices that connect later"
    finally:
        late.close()
    with services.db.session() as session:
        assert retained.pending(session) == 0


# --- 7. the MQTT loop, with a backlog ----------------------------------------------------------------------------


def test_a_backlog_from_three_devices_is_stored_once_in_groups_and_fully_acked(broker, enrolled, monkeypatch):
    services = broker
    services.clock = lambda: T_ENROL
    answers = [enrolled("radio", name=f"backlog {n}") for n in range(3)]
    services.clock = lambda: T0
    group_sizes: list[int] = []
    real_store_batches = ingest_mod.store_batches

    def counting_store_batches(svc, batches, lookups=None):
        group_sizes.append(len(batches))
        return real_store_batches(svc, batches, lookups)

    monkeypatch.setattr(ingest_mod, "store_batches", counting_store_batches)

    probes = []
    try:
        for answer in answers:
            mqtt = answer["mqtt"]
            probe = MqttProbe(services.settings.mqtt_port, mqtt["username"], mqtt["password"],
                              client_id=mqtt["username"]).connect()
            assert probe.accepted
            probe.subscribe(topics.ack(answer["device"]))
            probes.append(probe)
        # A session that exists but is away: the broker keeps the batches for it, and they arrive as one backlog.
        away = Ingest(services, client_id="lessoncast-ingest-paths").start()
        assert away.subscribed.wait(10)
        away.stop()

        sent: dict[str, list[dict]] = {a["device"]: [] for a in answers}
        order = []
        for k in range(10):
            for n, answer in enumerate(answers):
                batch_no = 9 - k if n == 2 else k  # the third device's batches arrive newest first
                order.append((n, batch_no))
        for n, batch_no in order:
            device = answers[n]["device"]
            events = [_event(2 * batch_no + 1), _event(2 * batch_no + 2)]
            sent[device] += events
            info = probes[n].client.publish(topics.events(device), _batch(device, events), qos=1,
                                            properties=_mqtt_props(device, 2 * batch_no + 1, 2 * batch_no + 2))
            info.wait_for_publish(5)
            assert info.is_published()

        back = Ingest(services, client_id="lessoncast-ingest-paths").start()
        try:
            for probe, answer in zip(probes, answers):
                probe.wait_for_payload(topics.ack(answer["device"]), lambda p: json.loads(p) == {"epoch": 1, "seq": 20},
                                       timeout=20)
        finally:
            back.stop()
    finally:
        for probe in probes:
            probe.close()

    with services.db.session() as session:
        stored = session.execute(select(DeviceEvent.device_uid, DeviceEvent.event_id)).all()
    assert len(stored) == 60 and len(set(stored)) == 60
    assert {(d, e) for d, e in stored} == {(d, e["id"]) for d, events in sent.items() for e in events}
    for device in sent:
        row = _sequence(services, device)
        assert (row.acked, row.events, row.duplicates) == (20, 20, 0)
    assert sum(group_sizes) == 30, group_sizes
    assert max(group_sizes) > 1, f"the backlog was stored in groups: {group_sizes}"


def _mqtt_props(device: str, first: int, last: int):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = list(_props(device, first, last).items())
    return props


def test_one_batch_that_cannot_be_stored_does_not_hold_back_its_group(services, radios, monkeypatch):
    from server.events.ingest_loop import _Message

    good, poisoned = radios(2)
    real_attribute = attendance.attribute

    def attribute(events, received_at, facts, rules):
        if facts is not None and facts.uid == poisoned:
            raise OverflowError("date value out of range")
        return real_attribute(events, received_at, facts, rules)

    monkeypatch.setattr(attendance, "attribute", attribute)
    loop = Ingest(services, client_id="lessoncast-ingest-unit")
    group = [_Message("events", d, _props(d, 1, 1), _batch(d, [_event(1)]), mid, 1, 0, T0)
             for mid, d in enumerate([poisoned, good], 1)]
    loop._handle(group)
    assert _count(services, DeviceEvent, device_uid=good) == 1
    assert _count(services, DeviceEvent, device_uid=poisoned) == 0
    assert _sequence(services, good).acked == 1
    # The batch nothing could store is quarantined with the reason and acked, so the device is not stuck resending.
    assert _count(services, QuarantinedBatch, device_uid=poisoned) == 1
    assert _sequence(services, poisoned).acked == 1 and _sequence(services, poisoned).quarantined == 1
    with services.db.session() as session:
        reason = session.scalar(select(QuarantinedBatch.reason).where(QuarantinedBatch.device_uid == poisoned))
    assert "could not be stored" in reason and "date value out of range" in reason


# --- 8. fleet columns and last wills ------------------------------------------------------------------------------


def test_fleet_columns_leave_wrong_types_empty():
    hostile = {"battery": "80", "storage_free_mb": 10**30, "queue": True, "manifest_version": 2**31,
               "firmware": 12, "agent_version": "v" * 100, "sync": ["idle"], "stale": "yes"}
    assert fleet_columns(hostile) == {"battery": None, "storage_free_mb": None, "firmware": None,
                                      "agent_version": "v" * 32, "manifest_version": None, "sync_state": None,
                                      "stale": None, "outbox_depth": None}
    assert fleet_columns({"battery": 79.9, "storage_free_mb": -(2**31) + 1, "queue": float("nan"),
                          "manifest_version": float("inf"), "stale": False, "firmware": "",
                          "sync": "同步中"}) == {
        "battery": 79, "storage_free_mb": -(2**31) + 1, "firmware": "", "agent_version": None,
        "manifest_version": None, "sync_state": "同步中", "stale": False, "outbox_depth": None}
    assert fleet_columns({"queue": False, "battery": None, "stale": 1, "manifest_version": -(2**31)}) == {
        "battery": None, "storage_free_mb": None, "firmware": None, "agent_version": None,
        "manifest_version": None, "sync_state": None, "stale": None, "outbox_depth": None}
    assert set(fleet_columns({})) == {"battery", "storage_free_mb", "firmware", "agent_version", "manifest_version",
                                      "sync_state", "stale", "outbox_depth"}


def test_store_status_survives_hostile_bodies_and_a_last_will_keeps_the_fleet(services, radios):
    (device,) = radios(1)

    def status():
        with services.db.session() as session:
            return session.get(DeviceStatus, device)

    hostile = b'{"online": true, "battery": "full", "queue": 1e308, "storage_free_mb": 12345678901234567890}'
    assert store_status(services, device, hostile, T0)
    row = status()
    assert row.online and (row.battery, row.outbox_depth, row.storage_free_mb) == (None, None, None)

    for refused in [b'{"online": "yes"}', b'{"online": true, "battery": NaN}', b'[1]', b'{"a":1,"a":2}', b"\xff",
                    b"", b"[" * 5000 + b"]" * 5000]:
        assert not store_status(services, device, refused, T0), refused[:20]
    assert not store_status(services, "r-nobody00000", b'{"online": true}', T0)

    later = T0 + timedelta(minutes=5)
    full = {"online": True, "battery": 80, "storage_free_mb": 512, "queue": 3, "firmware": "fw-1.2",
            "agent_version": "0.9", "manifest_version": 7, "sync": "idle", "stale": False}
    assert store_status(services, device, json.dumps(full).encode(), later)
    assert store_status(services, device, b'{"online": false}', later + timedelta(minutes=5))
    row = status()
    assert not row.online and row.body == {**full, "online": False} and row.received_at == later
    assert (row.battery, row.storage_free_mb, row.outbox_depth, row.firmware, row.agent_version,
            row.manifest_version, row.sync_state, row.stale) == (80, 512, 3, "fw-1.2", "0.9", 7, "idle", False)
    # The broker's retained copy, seen by a new ingest, never overwrites what the server has.
    assert not store_status(services, device, b'{"online": true, "battery": 5}', later, retained_copy=True)
    assert status().battery == 80 and not status().online


# --- 9. settings and the ingest children ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "x", "-1", "1.5", "two"])
def test_ingest_processes_must_be_a_positive_whole_number(tmp_path, value):
    env_name = settings_mod.BY_NAME["ingest_processes"].env
    assert env_name == "LESSONCAST_INGEST_PROCESSES"
    with pytest.raises(settings_mod.SettingsError) as refused:
        settings_mod.load(environ={"LESSONCAST_DATA_DIR": str(tmp_path), env_name: value})
    assert env_name in str(refused.value) and repr(value) in str(refused.value)


def test_ingest_children_have_stable_distinct_client_ids(tmp_path):
    def children(count: int):
        settings = settings_mod.load(environ={"LESSONCAST_DATA_DIR": str(tmp_path),
                                              "LESSONCAST_INGEST_PROCESSES": str(count)})
        return _ingest_children(settings, {"X": "1"})

    (single,) = children(1)
    assert single.name == "ingest" and single.argv[-3:] == ["-m", "lessoncast", "ingest"]
    assert "--client-id" not in single.argv and single.env == {"X": "1"}

    pair = children(2)
    assert [c.name for c in pair] == ["ingest-1", "ingest-2"]
    ids = [c.argv[c.argv.index("--client-id") + 1] for c in pair]
    assert len(set(ids)) == 2 and all(i.startswith("lessoncast-ingest-") for i in ids)
    assert [c.argv[c.argv.index("--client-id") + 1] for c in children(2)] == ids, "the same ids after a restart"
    assert [c.argv[c.argv.index("--client-id") + 1] for c in children(3)][:2] == ids
