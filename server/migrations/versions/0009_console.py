"""console accounts

The staff console signs users in with their password: each user row keeps the language they chose (zh_CN or en),
how many wrong passwords were given in a row and until when the account is locked after five, when an admin
disabled it, and a session generation that changes with the password so other signed-in browsers are signed out.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 08:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('language', sa.String(8), nullable=True))
        batch.add_column(sa.Column('failed_logins', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('locked_until', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('disabled_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('session_generation', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('users') as batch:
        for column in ('session_generation', 'disabled_at', 'locked_until', 'failed_logins', 'language'):
            batch.drop_column(column)
