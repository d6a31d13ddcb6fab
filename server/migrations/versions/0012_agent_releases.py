"""agent releases and rollouts

The device agent updates itself through the signed channel: each registered release (its wheel and its dependencies'
wheels, signed as TUF targets), each rollout of a release, and the rollout's stages with their thresholds and the
devices each stage took.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 11:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('agent_releases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.String(length=32), nullable=False),
    sa.Column('agent_wheel', sa.JSON(), nullable=False),
    sa.Column('dependencies', sa.JSON(), nullable=False),
    sa.Column('reads_state_from', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('version')
    )
    op.create_table('agent_rollouts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('release_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('auto_advance', sa.Boolean(), nullable=False),
    sa.Column('allow_downgrade', sa.Boolean(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('current_stage', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['release_id'], ['agent_releases.id']),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_agent_rollouts_release_id', 'agent_rollouts', ['release_id'])
    op.create_index('ix_agent_rollouts_state', 'agent_rollouts', ['state'])
    op.create_table('agent_rollout_stages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rollout_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('count', sa.Integer(), nullable=True),
    sa.Column('township', sa.String(length=64), nullable=True),
    sa.Column('success_pct', sa.Integer(), nullable=False),
    sa.Column('error_pct', sa.Integer(), nullable=False),
    sa.Column('time_limit_min', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('devices', sa.JSON(), nullable=False),
    sa.Column('accepted_failures', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['rollout_id'], ['agent_rollouts.id']),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_agent_rollout_stages_rollout_id', 'agent_rollout_stages', ['rollout_id'])


def downgrade() -> None:
    op.drop_index('ix_agent_rollout_stages_rollout_id', table_name='agent_rollout_stages')
    op.drop_table('agent_rollout_stages')
    op.drop_index('ix_agent_rollouts_state', table_name='agent_rollouts')
    op.drop_index('ix_agent_rollouts_release_id', table_name='agent_rollouts')
    op.drop_table('agent_rollouts')
    op.drop_table('agent_releases')
