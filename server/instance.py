"""Instance set-up: the data directory, secret key, migrated database and the first admin account."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from sqlalchemy import func, select

from server import migrate
from server.accounts.auth import hash_password
from server.accounts.models import User
from server.keyfiles import secret_key
from server.programmes import trust as trust_service
from server.services import Services


@dataclass(frozen=True)
class InitResult:
    """What initialisation did: the admin password when it created the first account, the root key passphrase
    and path when it created the signing keys."""

    admin_password: Optional[str]
    root_passphrase: Optional[str] = None
    root_key: Optional[Path] = None


def make_private(services: Services) -> None:
    """Make the data directory 0700 and the database, job queue and log files in it 0600, also when an older
    version (or another umask) created them open to everyone."""
    from sqlalchemy.engine import make_url

    data = services.data
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data, 0o700)
    files = [p for p in data.iterdir() if p.is_file() and (p.name.startswith(("lessoncast.db", "queue.db"))
                                                           or p.suffix == ".log" or p.name == "secret_key")]
    url = make_url(services.settings.db_url)
    if url.get_backend_name() == "sqlite" and url.database:
        db = Path(url.database)
        files += [p for p in db.parent.glob(db.name + "*") if p.is_file()]  # a database kept elsewhere
    for path in files:
        os.chmod(path, 0o600)


def initialise(services: Services, admin_username: str = "admin") -> InitResult:
    """Create the data directory, migrate the database, and create the first admin if there is no account."""
    data = services.data
    make_private(services)
    for sub in ("media", "sources", "uploads", "work", "broker"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    secret_key(data)
    migrate.upgrade(services.settings.db_url, card_key=services.card_key)
    make_private(services)  # the database file the migration may just have created
    root_passphrase, root_key = None, None
    if not trust_service.initialised(services):
        root_passphrase = trust_service.create_keys(services)
        root_key = trust_service.root_key_path(services)
    with services.db.session() as session:
        if session.scalar(select(func.count(User.id))):
            return InitResult(None, root_passphrase, root_key)
        password = secrets.token_urlsafe(12)
        session.add(User(username=admin_username, password_hash=hash_password(password), role="admin",
                         created_at=services.clock()))
    return InitResult(password, root_passphrase, root_key)
