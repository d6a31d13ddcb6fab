"""console fleet: device status history and the fleet table's indexes

Every status a device reports is kept as one row of ``device_status_history`` (battery, storage, online, programme
version, sync state, outbox depth) so the device page can chart it. The fleet table filters and sorts on the last
status's arrival time, online flag and sync state, so those get indexes.

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-03 11:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'device_status_history',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('device_uid', sa.String(64), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.Column('online', sa.Boolean(), nullable=False),
        sa.Column('battery', sa.Integer(), nullable=True),
        sa.Column('storage_free_mb', sa.Integer(), nullable=True),
        sa.Column('manifest_version', sa.Integer(), nullable=True),
        sa.Column('sync_state', sa.String(32), nullable=True),
        sa.Column('outbox_depth', sa.Integer(), nullable=True),
    )
    op.create_index('ix_device_status_history_device_at', 'device_status_history', ['device_uid', 'at'])
    op.create_index('ix_device_status_received_at', 'device_status', ['received_at'])


def downgrade() -> None:
    op.drop_index('ix_device_status_received_at', table_name='device_status')
    op.drop_index('ix_device_status_history_device_at', table_name='device_status_history')
    op.drop_table('device_status_history')
