"""card token digests

Members' card tokens, check-ins and the stored check-in events keep only the keyed digest of a card's token
(server/org/cards.py: HMAC-SHA256 under a key derived from the instance secret), so the database no longer holds the
tokens and a check-in still matches its member. The key comes from the instance, so this runs through
`lessoncast db upgrade` or `lessoncast init`/`run`; a database with plaintext cards refuses to upgrade without it.

The downgrade cannot give the tokens back (a keyed hash is one-way): it leaves the digests. Code before this
revision then matches no card check-in until the members' cards are imported again.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 01:00:00
"""
import json

from alembic import op
import sqlalchemy as sa

from server.org import cards


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_LIKE_DIGEST = cards.PREFIX + "%"


def _key(plaintext_rows: int) -> bytes:
    key = op.get_context().config.attributes.get("card_key")
    if key is None and plaintext_rows:
        raise RuntimeError(f"{plaintext_rows} card tokens must be hashed with the instance's card key: migrate with "
                           "'lessoncast db upgrade' (which knows the instance), not with alembic alone")
    return key or b""


def upgrade() -> None:
    bind = op.get_bind()
    numbers = set(bind.scalars(sa.text("SELECT member_no FROM members")))
    members = bind.execute(sa.text("SELECT id, card_token FROM members WHERE card_token IS NOT NULL "
                                   "AND card_token NOT LIKE :p"), {"p": _LIKE_DIGEST}).all()
    # A check-in's credential is a member number (no secret: kept) or a card's token (hashed), whatever the method.
    checkins = [(i, c) for i, c in bind.execute(sa.text("SELECT id, credential FROM checkins WHERE credential <> '' "
                                                        "AND credential NOT LIKE :p"), {"p": _LIKE_DIGEST})
                if c not in numbers]
    events = []
    for row_id, body in bind.execute(sa.text("SELECT id, body FROM device_events WHERE type = 'checkin'")):
        value = json.loads(body) if isinstance(body, str) else body
        if isinstance(value, dict):
            events.append((row_id, value))
    key = _key(len(members) + len(checkins) + len(events))
    for row_id, token in members:
        bind.execute(sa.text("UPDATE members SET card_token = :t WHERE id = :i"),
                     {"t": cards.digest(key, token), "i": row_id})
    for row_id, credential in checkins:
        bind.execute(sa.text("UPDATE checkins SET credential = :c WHERE id = :i"),
                     {"c": cards.digest(key, credential), "i": row_id})
    for row_id, value in events:
        redacted = cards.redact_checkin(value, key, numbers)
        if redacted is not value:
            bind.execute(sa.text("UPDATE device_events SET body = :b WHERE id = :i")
                         .bindparams(sa.bindparam("b", type_=sa.JSON)), {"b": redacted, "i": row_id})


def downgrade() -> None:
    # One-way: the tokens cannot be recovered from their digests (see the module docstring).
    pass
