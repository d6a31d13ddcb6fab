"""Database migrations through Alembic, driven from code so the CLI and tests share one path."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str, card_key: Optional[bytes] = None) -> Config:
    """An Alembic config pointing at lessoncast's migrations and the given database URL (and the instance's card
    key, which the migration that hashes card tokens needs)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["card_key"] = card_key
    return cfg


def upgrade(url: str, revision: str = "head", card_key: Optional[bytes] = None) -> None:
    """Migrate the database at URL up to REVISION (the newest by default)."""
    command.upgrade(alembic_config(url, card_key), revision)


def downgrade(url: str, revision: str) -> None:
    """Migrate the database at URL down to REVISION."""
    command.downgrade(alembic_config(url), revision)


def revisions(url: str) -> tuple[Optional[str], str]:
    """(the revision the database at URL is at, or None when it has none; the newest revision there is)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
    return current, head
