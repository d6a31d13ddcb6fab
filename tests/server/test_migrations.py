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


def test_operator_tokens_made_with_a_township_name_get_its_code(tmp_path):
    """The old docs said `--township 青山镇`: such tokens matched no township; the upgrade gives them the code."""
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path / 't.db'}"
    migrate.upgrade(url, "0004")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO townships (code, name) VALUES ('qs', '青山镇'), ('hw', '海湾镇'), "
                          "('hw2', '海湾镇')"))
        for n, township in enumerate(("青山镇", "qs", "海湾镇", "Qingshan", None)):
            conn.execute(text("INSERT INTO api_tokens (name, role, township, token_sha256, created_at) "
                              "VALUES (:n, 'operator', :t, :h, '2026-01-01 00:00:00')"),
                         {"n": f"t{n}", "t": township, "h": f"{n:064d}"})
    migrate.upgrade(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT township, expires_at FROM api_tokens ORDER BY id")).all()
    engine.dispose()
    # A name two townships share stays as it was (no guess), as does a name no township has.
    assert rows == [("qs", None), ("qs", None), ("海湾镇", None), ("Qingshan", None), (None, None)]
