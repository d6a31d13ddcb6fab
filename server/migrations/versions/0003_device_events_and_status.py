"""device events and status

Events devices report, stored raw once per (device, event id) with their arrival time; batches the server
quarantined, with their raw bytes; how far each device's event sequence is stored per epoch (the ack it gets);
and each device's last status. Timestamps are naive UTC, as in 0001 and 0002.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('device_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('device_uid', sa.String(length=64), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('seq_last', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.Column('device_time', sa.DateTime(), nullable=True),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('device_uid', 'event_id', name='uq_device_events_device_event')
    )
    with op.batch_alter_table('device_events', schema=None) as batch_op:
        batch_op.create_index('ix_device_events_device_epoch_seq', ['device_uid', 'epoch', 'seq'], unique=False)

    op.create_table('quarantined_batches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('device_uid', sa.String(length=64), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('seq_first', sa.Integer(), nullable=False),
    sa.Column('seq_last', sa.Integer(), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('quarantined_batches', schema=None) as batch_op:
        batch_op.create_index('ix_quarantined_batches_device_epoch_seq', ['device_uid', 'epoch', 'seq_first'],
                              unique=False)

    op.create_table('device_sequences',
    sa.Column('device_uid', sa.String(length=64), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('acked', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('device_uid', 'epoch')
    )
    op.create_table('device_status',
    sa.Column('device_uid', sa.String(length=64), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.Column('online', sa.Boolean(), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('device_uid')
    )


def downgrade() -> None:
    op.drop_table('device_status')
    op.drop_table('device_sequences')
    with op.batch_alter_table('quarantined_batches', schema=None) as batch_op:
        batch_op.drop_index('ix_quarantined_batches_device_epoch_seq')

    op.drop_table('quarantined_batches')
    with op.batch_alter_table('device_events', schema=None) as batch_op:
        batch_op.drop_index('ix_device_events_device_epoch_seq')

    op.drop_table('device_events')
