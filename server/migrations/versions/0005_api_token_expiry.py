"""api token expiry

API tokens get an optional expiry (``expires_at``; empty: never). Operator tokens made from the old documentation's
example hold a township's name (``--township 青山镇``), which matched nothing, so those operators saw nothing; where
exactly one township has that name, the token gets its code, which is what the township scope compares.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 01:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('api_tokens', sa.Column('expires_at', sa.DateTime(), nullable=True))
    op.execute("""
        UPDATE api_tokens SET township = (SELECT t.code FROM townships t WHERE t.name = api_tokens.township)
        WHERE township IS NOT NULL
          AND township NOT IN (SELECT code FROM townships)
          AND (SELECT count(*) FROM townships t WHERE t.name = api_tokens.township) = 1
    """)


def downgrade() -> None:
    # The township codes stay: a code is what an operator token should have held all along.
    with op.batch_alter_table('api_tokens') as batch:
        batch.drop_column('expires_at')
