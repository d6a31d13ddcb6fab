"""Card tokens are stored as keyed digests: a check-in still finds its member, and no token is in the database."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, select, text

from server import migrate
from server.attendance.models import Checkin, SessionAttendee
from server.org import cards, service as org
from server.org.models import Member
from tests.server.test_reports import make_county


def _database_bytes(services) -> bytes:
    path = services.data / "lessoncast.db"
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_a_card_check_in_matches_its_member_and_no_token_is_stored(services):
    assert services.settings.db_url.startswith("sqlite"), "this test reads the SQLite files"
    c = make_county(services)  # M00000001's card CARD-0001 checks in at the class in t00-s00
    with services.db.session() as session:
        checkin = session.scalar(select(Checkin).where(Checkin.method == "card"))
        member = session.scalar(select(Member).where(Member.member_no == "M00000001"))
        assert checkin.member_id == member.id
        assert checkin.credential == cards.digest(services.card_key, "CARD-0001") == member.card_token
        by_number = session.scalar(select(Checkin).where(Checkin.credential == "M00010001"))
        assert by_number is not None and by_number.member_id is not None, "a member number is no secret: kept"
        attendees = session.scalars(select(SessionAttendee.member_id)
                                    .where(SessionAttendee.session_key == c.class_key)).all()
        assert member.id in attendees
    services.db.dispose()
    assert b"CARD-0001" not in _database_bytes(services), "the token is nowhere in the database, raw events included"


def test_imported_and_edited_cards_are_digests_and_still_refuse_a_taken_card(services, client, auth):
    from tests.server.test_org import GROUPS, MEMBERS, SITES

    org.import_sites(services, SITES.encode(), "test")
    org.import_groups(services, GROUPS.encode(), "test")
    org.import_members(services, MEMBERS.encode(), "test")
    taken = MEMBERS.replace("M002,李四,青山村党支部,qs01,", "M002,李四,青山村党支部,qs01,CARD-3")
    with pytest.raises(org.OrgImportError) as refused:
        org.import_members(services, (taken.split("\n")[0] + "\n" + taken.split("\n")[2] + "\n").encode(), "t")
    assert "CARD-3" in str(refused.value.errors), "the stored digest still tells that the card is taken"
    edited = client.patch("/api/v1/members/M002", headers=auth("admin"), json={"card_token": "CARD-9"})
    assert edited.status_code == 200, edited.get_json()
    assert edited.get_json()["card_token"] == cards.digest(services.card_key, "CARD-9")
    again = client.patch("/api/v1/members/M001", headers=auth("admin"), json={"card_token": "CARD-9"})
    assert again.status_code == 409 and "CARD-9" in again.get_json()["error"]["message"]
    services.db.dispose()
    assert b"CARD-1" not in _database_bytes(services) and b"CARD-9" not in _database_bytes(services)


def test_the_migration_hashes_existing_cards_checkins_and_events(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate.upgrade(url, "0004")
    engine = create_engine(url)
    body = {"id": "e1", "seq": 1, "type": "checkin", "method": "card", "credential": "CARD-7"}
    qr = {"id": "e2", "seq": 2, "type": "checkin", "method": "qr", "credential": "M007"}
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO townships (id, code, name) VALUES (1, 't', 'T')"))
        conn.execute(text("INSERT INTO sites (id, code, name, township_id) VALUES (1, 's', 'S', 1)"))
        conn.execute(text("INSERT INTO members (id, member_no, name, branch, site_id, card_token, flags, updated_at) "
                          "VALUES (1, 'M007', '甲', '', 1, 'CARD-7', '[]', '2026-01-01 00:00:00')"))
        conn.execute(text("INSERT INTO checkins (device_uid, event_id, site_id, at, member_id, method, credential, "
                          "clock_flagged) VALUES ('d', 'e1', 1, '2026-01-01 00:00:00', 1, 'card', 'CARD-7', 0)"))
        for n, b in enumerate((body, qr), 1):
            conn.execute(text("INSERT INTO device_events (device_uid, epoch, seq, seq_last, event_id, type, body, "
                              "received_at) VALUES ('d', 1, :n, :n, :e, 'checkin', :b, '2026-01-01 00:00:00')"),
                         {"n": n, "e": b["id"], "b": json.dumps(b)})
    with pytest.raises(RuntimeError, match="lessoncast db upgrade"):
        migrate.upgrade(url)  # no instance key: refuses rather than leave the tokens or hash with a wrong key
    key = cards.derive_key("instance secret")
    migrate.upgrade(url, card_key=key)
    want = cards.digest(key, "CARD-7")
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT card_token FROM members")) == want
        assert conn.scalar(text("SELECT credential FROM checkins")) == want
        stored = [json.loads(b) for b in conn.scalars(text("SELECT body FROM device_events ORDER BY seq"))]
    assert stored == [dict(body, credential=want), qr], "a card's token is replaced; a member number stays"
    migrate.downgrade(url, "0004")  # one-way: the digests stay
    engine.dispose()
