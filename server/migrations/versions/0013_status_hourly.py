"""device status hourly rollup: what the device page charts, one row per device and hour

Ingest adds each status to its hour's row (reports, online reports, lowest/highest/latest battery, lowest free
storage, first and last online and offline times) in the transaction that stores the minute row, so a week's chart
reads 168 rows. Existing minute rows are summed up here once.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 12:15:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'device_status_hourly',
        sa.Column('device_uid', sa.String(64), primary_key=True),
        sa.Column('hour', sa.DateTime(), primary_key=True),
        sa.Column('reports', sa.Integer(), nullable=False),
        sa.Column('online_reports', sa.Integer(), nullable=False),
        sa.Column('min_battery', sa.Integer(), nullable=True),
        sa.Column('max_battery', sa.Integer(), nullable=True),
        sa.Column('last_battery', sa.Integer(), nullable=True),
        sa.Column('last_battery_at', sa.DateTime(), nullable=True),
        sa.Column('min_storage_free_mb', sa.Integer(), nullable=True),
        sa.Column('first_online_at', sa.DateTime(), nullable=True),
        sa.Column('last_online_at', sa.DateTime(), nullable=True),
        sa.Column('first_offline_at', sa.DateTime(), nullable=True),
        sa.Column('last_offline_at', sa.DateTime(), nullable=True),
    )
    from server.events.rollup import backfill  # the same summing-up ingest does, over the stored minute rows
    backfill(op.get_bind())


def downgrade() -> None:
    op.drop_table('device_status_hourly')
