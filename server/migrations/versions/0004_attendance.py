"""attendance

What ingest makes of plays and check-ins (lesson coverage, class sessions and their attendees, check-ins, broadcast
days, excluded events), the attributed time and clock flag of each event, ingest counters per device and epoch, the
fleet columns of device status, and each device's first enrolment. Counters start at 0 and first_enrolled_at is
copied from enrolled_at; run `lessoncast attendance rebuild` once to derive attendance from events stored before.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 05:27:47.042255
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('attendance_exclusions',
    sa.Column('device_uid', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('events', sa.Integer(), nullable=False),
    sa.Column('last_event_id', sa.String(length=36), nullable=False),
    sa.PrimaryKeyConstraint('device_uid', 'reason')
    )
    op.create_table('broadcast_days',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('programme', sa.String(length=64), nullable=False),
    sa.Column('lesson_id', sa.Integer(), nullable=False),
    sa.Column('plays', sa.Integer(), nullable=False),
    sa.Column('listened_cs', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('site_id', 'day', 'programme', 'lesson_id', name='uq_broadcast_day')
    )
    with op.batch_alter_table('broadcast_days', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_broadcast_days_site_id'), ['site_id'], unique=False)

    op.create_table('class_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=160), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('device_uid', sa.String(length=64), nullable=True),
    sa.Column('play_id', sa.String(length=64), nullable=True),
    sa.Column('programme', sa.String(length=64), nullable=True),
    sa.Column('lesson_id', sa.Integer(), nullable=True),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('slot_kind', sa.String(length=16), nullable=True),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('ended_at', sa.DateTime(), nullable=False),
    sa.Column('listened_s', sa.Float(), nullable=False),
    sa.Column('is_class', sa.Boolean(), nullable=False),
    sa.Column('clock_flagged', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    with op.batch_alter_table('class_sessions', schema=None) as batch_op:
        batch_op.create_index('ix_class_sessions_device_started', ['device_uid', 'started_at'], unique=False)
        batch_op.create_index('ix_class_sessions_site_started', ['site_id', 'started_at'], unique=False)

    op.create_table('checkins',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('device_uid', sa.String(length=64), nullable=False),
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=True),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('credential', sa.String(length=128), nullable=False),
    sa.Column('clock_flagged', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('device_uid', 'event_id', name='uq_checkins_device_event')
    )
    with op.batch_alter_table('checkins', schema=None) as batch_op:
        batch_op.create_index('ix_checkins_device_at', ['device_uid', 'at'], unique=False)

    op.create_table('lesson_coverage',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('programme', sa.String(length=64), nullable=False),
    sa.Column('lesson_id', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('duration_s', sa.Float(), nullable=False),
    sa.Column('segments', sa.JSON(), nullable=False),
    sa.Column('covered_s', sa.Float(), nullable=False),
    sa.Column('completed_at', sa.DateTime(), nullable=True),
    sa.Column('first_at', sa.DateTime(), nullable=False),
    sa.Column('last_at', sa.DateTime(), nullable=False),
    sa.Column('events', sa.Integer(), nullable=False),
    sa.Column('clock_flagged', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('member_id', 'programme', 'lesson_id', 'sha256', name='uq_lesson_coverage')
    )
    with op.batch_alter_table('lesson_coverage', schema=None) as batch_op:
        batch_op.create_index('ix_lesson_coverage_completed', ['completed_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_lesson_coverage_member_id'), ['member_id'], unique=False)

    op.create_table('session_attendees',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_key', sa.String(length=160), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('removed', sa.Boolean(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('session_key', 'member_id', 'source', name='uq_session_attendee')
    )
    with op.batch_alter_table('session_attendees', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_session_attendees_member_id'), ['member_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_session_attendees_session_key'), ['session_key'], unique=False)

    with op.batch_alter_table('device_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('clock_flag', sa.String(length=16), nullable=True))

    with op.batch_alter_table('device_sequences', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stored_max', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('events', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('duplicates', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('quarantined', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('rejected', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('clock_flagged', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('last_event_at', sa.DateTime(), nullable=True))
    op.execute("""
        UPDATE device_sequences SET stored_max = (
          SELECT MAX(m) FROM (
            SELECT MAX(seq_last) AS m FROM device_events e
             WHERE e.device_uid = device_sequences.device_uid AND e.epoch = device_sequences.epoch
            UNION ALL
            SELECT MAX(seq_last) FROM quarantined_batches q
             WHERE q.device_uid = device_sequences.device_uid AND q.epoch = device_sequences.epoch
            UNION ALL
            SELECT device_sequences.acked) AS stored)
    """)

    with op.batch_alter_table('device_status', schema=None) as batch_op:
        batch_op.add_column(sa.Column('battery', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('storage_free_mb', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('firmware', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('agent_version', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('manifest_version', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('sync_state', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('stale', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('outbox_depth', sa.Integer(), nullable=True))

    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('first_enrolled_at', sa.DateTime(), nullable=True))
    op.execute("UPDATE devices SET first_enrolled_at = enrolled_at")



def downgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_column('first_enrolled_at')

    with op.batch_alter_table('device_status', schema=None) as batch_op:
        batch_op.drop_column('outbox_depth')
        batch_op.drop_column('stale')
        batch_op.drop_column('sync_state')
        batch_op.drop_column('manifest_version')
        batch_op.drop_column('agent_version')
        batch_op.drop_column('firmware')
        batch_op.drop_column('storage_free_mb')
        batch_op.drop_column('battery')

    with op.batch_alter_table('device_sequences', schema=None) as batch_op:
        batch_op.drop_column('last_event_at')
        batch_op.drop_column('clock_flagged')
        batch_op.drop_column('rejected')
        batch_op.drop_column('quarantined')
        batch_op.drop_column('duplicates')
        batch_op.drop_column('events')
        batch_op.drop_column('stored_max')

    with op.batch_alter_table('device_events', schema=None) as batch_op:
        batch_op.drop_column('clock_flag')
        batch_op.drop_column('at')

    with op.batch_alter_table('session_attendees', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_session_attendees_session_key'))
        batch_op.drop_index(batch_op.f('ix_session_attendees_member_id'))

    op.drop_table('session_attendees')
    with op.batch_alter_table('lesson_coverage', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lesson_coverage_member_id'))
        batch_op.drop_index('ix_lesson_coverage_completed')

    op.drop_table('lesson_coverage')
    with op.batch_alter_table('checkins', schema=None) as batch_op:
        batch_op.drop_index('ix_checkins_device_at')

    op.drop_table('checkins')
    with op.batch_alter_table('class_sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_class_sessions_site_started')
        batch_op.drop_index('ix_class_sessions_device_started')

    op.drop_table('class_sessions')
    with op.batch_alter_table('broadcast_days', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_broadcast_days_site_id'))

    op.drop_table('broadcast_days')
    op.drop_table('attendance_exclusions')
