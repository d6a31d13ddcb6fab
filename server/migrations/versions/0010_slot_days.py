"""slot days

A programme slot now names the days of the week it plays on (``days``: "mon" … "sun", Monday first). Slots are kept
in the ``programmes.slots`` JSON column, so no column changes: this writes ``days`` with all seven days into every
stored slot that has none, which is what such a slot has always meant, so a stored programme reads the same before
and after. The service also reads a slot without ``days`` as every day, so a row written by an older server between
upgrade steps is still right.

Downgrade removes ``days`` again. A slot restricted to some days then plays every day, as the older server can say
nothing else; the downgrade refuses to run while a published or draft programme has such a slot, rather than
widening a county's broadcasts silently. Remove or widen those slots first.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 11:00:00.000000
"""
import json

from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

programmes = sa.table('programmes', sa.column('id', sa.Integer), sa.column('code', sa.String),
                      sa.column('version', sa.Integer), sa.column('slots', sa.JSON))


def _rows(bind):
    for row in bind.execute(sa.select(programmes.c.id, programmes.c.code, programmes.c.version,
                                      programmes.c.slots)).all():
        slots = row.slots if not isinstance(row.slots, str) else json.loads(row.slots)
        yield row, list(slots or [])


def upgrade() -> None:
    bind = op.get_bind()
    for row, slots in _rows(bind):
        if all("days" in s for s in slots):
            continue
        filled = [{**s, "days": s.get("days", WEEKDAYS)} for s in slots]
        bind.execute(programmes.update().where(programmes.c.id == row.id).values(slots=filled))


def downgrade() -> None:
    bind = op.get_bind()
    rows = list(_rows(bind))
    restricted = [f"{row.code} v{row.version} {s['time']}" for row, slots in rows for s in slots
                  if s.get("days", WEEKDAYS) != WEEKDAYS]
    if restricted:
        raise RuntimeError("downgrade below 0010 would make these slots play every day: "
                           + ", ".join(restricted) + ". Remove or widen them to every day first.")
    for row, slots in rows:
        if any("days" in s for s in slots):
            stripped = [{k: v for k, v in s.items() if k != "days"} for s in slots]
            bind.execute(programmes.update().where(programmes.c.id == row.id).values(slots=stripped))
