"""The county's TUF repository as the server uses it: where keys and metadata live, and the root passphrase.

The signing itself is ``playlists.trust`` (python-tuf); this module binds it to the instance's data directory:
online keys in ``<data>/keys``, the repository served at ``/tuf/`` from ``<data>/tuf``.
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional

from playlists.trust import TrustError
from playlists.trust_repository import Expiries, Repository, init_keys
from server.errors import Unavailable
from server.i18n import _l


def keys_dir(services) -> Path:
    """Where the online keys (and, until an admin moves it offline, the root key) are kept."""
    return services.data / "keys"


def repo_dir(services) -> Path:
    """The TUF repository directory (metadata/ and targets/)."""
    return services.data / "tuf"


def root_key_path(services) -> Path:
    """The root key file written by ``keys init``."""
    return keys_dir(services) / "root.pem"


def initialised(services) -> bool:
    """Whether the repository has its root metadata."""
    return (repo_dir(services) / "metadata" / "root.json").exists()


def root_passphrase(services) -> Optional[str]:
    """The root key passphrase from LESSONCAST_ROOT_PASSPHRASE or the file LESSONCAST_ROOT_PASSPHRASE_FILE."""
    s = services.settings
    if s.root_passphrase:
        return s.root_passphrase
    if s.root_passphrase_file:
        try:
            return Path(s.root_passphrase_file).expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise TrustError(f"cannot read the root passphrase file {s.root_passphrase_file}: {exc.strerror}")
    return None


def create_keys(services, passphrase: Optional[str] = None) -> Optional[str]:
    """Create the keys and the first metadata; return the passphrase when it was generated here (shown once)."""
    generated = None
    passphrase = passphrase or root_passphrase(services)
    if not passphrase:
        generated = passphrase = "-".join(secrets.token_hex(3) for _ in range(5))
    init_keys(keys_dir(services), repo_dir(services), passphrase, now=services.clock())
    return generated


def repository(services) -> Repository:
    """The county's repository; Unavailable (with what to run) while no keys exist."""
    if not initialised(services):
        raise Unavailable("trust_not_initialised",
                          _l("The county's signing keys do not exist yet. Run 'lessoncast keys init' (or 'lessoncast "
                             "run', which creates them on first start)."))
    return Repository(repo_dir(services), keys_dir(services), Expiries())


def root_json(services) -> dict[str, Any]:
    """The current root metadata as a JSON object (what an enrolling device starts to trust)."""
    return json.loads(repository(services).root_bytes())


def warnings(services, days: int = 30) -> list[str]:
    """Expiry warnings for the root metadata and the online roles, for the CLI and /healthz."""
    if not initialised(services):
        return ["the county's signing keys do not exist yet: run 'lessoncast keys init'"]
    return repository(services).expiry_warnings(now=services.clock(), days=days)


def resign(services) -> list[str]:
    """Re-sign every online role that expires within 12 hours (half the timestamp's day); return the roles re-signed."""
    if not initialised(services):
        return []
    return repository(services).resign_expiring(now=services.clock(), within=timedelta(hours=12))
