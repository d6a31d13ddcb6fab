"""training records

Members' roles over time (study-hour quotas depend on them), off-system trainings entered or imported as rosters,
training certificates, site logbooks' feedback entries, a lesson's credited study hours, and an index that lets
the operating log read a terminal's commands and errors without its plays.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 08:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('lessons', schema=None) as batch_op:
        batch_op.add_column(sa.Column('credited_hours', sa.Float(), nullable=True))
    op.create_table('member_roles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('from_date', sa.Date(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('member_id', 'from_date', name='uq_member_roles_day')
    )
    op.create_index('ix_member_roles_member_id', 'member_roles', ['member_id'])
    op.create_table('off_system_trainings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('hours', sa.Float(), nullable=False),
    sa.Column('entered_by', sa.String(length=100), nullable=False),
    sa.Column('entered_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('member_id', 'day', 'title', name='uq_off_system_training')
    )
    op.create_index('ix_off_system_trainings_member_id', 'off_system_trainings', ['member_id'])
    op.create_index('ix_off_system_trainings_day', 'off_system_trainings', ['day'])
    op.create_table('certificates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=32), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('code_digest', sa.String(length=64), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('programme', sa.String(length=64), nullable=False),
    sa.Column('programme_title', sa.String(length=200), nullable=False),
    sa.Column('hours', sa.Float(), nullable=False),
    sa.Column('completed_on', sa.Date(), nullable=False),
    sa.Column('issued_at', sa.DateTime(), nullable=False),
    sa.Column('issued_by', sa.String(length=100), nullable=False),
    sa.Column('prints', sa.Integer(), nullable=False),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('number'),
    sa.UniqueConstraint('code_digest'),
    sa.UniqueConstraint('member_id', 'programme', name='uq_certificate_member_programme')
    )
    op.create_index('ix_certificates_member_id', 'certificates', ['member_id'])
    op.create_table('site_feedback',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('author', sa.String(length=100), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('text', sa.String(length=1000), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_site_feedback_site_at', 'site_feedback', ['site_id', 'at'])
    op.create_table('makeup_sessions',
    sa.Column('session_key', sa.String(length=160), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=24), nullable=False),
    sa.Column('programme', sa.String(length=64), nullable=True),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('due_at', sa.DateTime(), nullable=False),
    sa.Column('handled_at', sa.DateTime(), nullable=False),
    sa.Column('approved_by', sa.String(length=100), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('session_key')
    )
    op.create_index('ix_makeup_sessions_site_id', 'makeup_sessions', ['site_id'])
    op.create_table('makeups_owed',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_key', sa.String(length=160), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('lesson_id', sa.Integer(), nullable=False),
    sa.Column('radio', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('session_key', 'member_id', 'lesson_id', name='uq_makeup_owed')
    )
    op.create_index('ix_makeups_owed_session_key', 'makeups_owed', ['session_key'])
    op.create_index('ix_makeups_owed_member_id', 'makeups_owed', ['member_id'])
    # The operating log reads a terminal's commands and errors of a month without touching its plays.
    op.create_index('ix_device_events_type_device_at', 'device_events', ['type', 'device_uid', 'at'])


def downgrade() -> None:
    op.drop_index('ix_makeups_owed_member_id', table_name='makeups_owed')
    op.drop_index('ix_makeups_owed_session_key', table_name='makeups_owed')
    op.drop_table('makeups_owed')
    op.drop_index('ix_makeup_sessions_site_id', table_name='makeup_sessions')
    op.drop_table('makeup_sessions')
    op.drop_index('ix_device_events_type_device_at', table_name='device_events')
    op.drop_index('ix_site_feedback_site_at', table_name='site_feedback')
    op.drop_table('site_feedback')
    op.drop_index('ix_certificates_member_id', table_name='certificates')
    op.drop_table('certificates')
    op.drop_index('ix_off_system_trainings_day', table_name='off_system_trainings')
    op.drop_index('ix_off_system_trainings_member_id', table_name='off_system_trainings')
    op.drop_table('off_system_trainings')
    op.drop_index('ix_member_roles_member_id', table_name='member_roles')
    op.drop_table('member_roles')
    with op.batch_alter_table('lessons', schema=None) as batch_op:
        batch_op.drop_column('credited_hours')
