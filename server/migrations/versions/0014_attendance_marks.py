"""attendance marks: one change mark per county day, what a kept dashboard report's fingerprint reads

Every writer of lesson coverage, class sessions, their attendees and broadcast days moves the marks of the county
days it changed, in its own transaction (server/attendance/marks.py), so a report's fingerprint reads these few
rows instead of summing the aggregates over its window. Existing data gets the sentinel day 0001-01-01 (before
every window's end), version 1; reports kept before this revision have another fingerprint and are computed again
once.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 14:00:00.000000
"""
from datetime import date

from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    marks = op.create_table(
        'attendance_marks',
        sa.Column('day', sa.Date(), primary_key=True),
        sa.Column('version', sa.Integer(), nullable=False),
    )
    op.bulk_insert(marks, [{'day': date(1, 1, 1), 'version': 1}])


def downgrade() -> None:
    op.drop_table('attendance_marks')
