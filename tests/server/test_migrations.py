"""Migrations build the schema the models describe, go down and up again, on SQLite and PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from server import migrate
from server.db import Base



def _no_drift(url):
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"render_as_batch": True}), Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"


def test_sqlite_up_down_up(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate.upgrade(url)
    _no_drift(url)
    migrate.downgrade(url, "base")
    migrate.upgrade(url)
    _no_drift(url)


def test_postgresql_up_down_up(pg_url):
    migrate.upgrade(pg_url)
    _no_drift(pg_url)
    migrate.downgrade(pg_url, "base")
    migrate.upgrade(pg_url)
