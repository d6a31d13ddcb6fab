"""The agent's files on the device: credentials, trust root, config, verified programme, media and player state.

Every write is atomic (temporary file, fsync, rename), so a power cut at any instant leaves either the old file or the
new one, never half of either. Secrets are written 0600.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace PATH with DATA so that a crash leaves the old or the new content, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives the power cut
    finally:
        os.close(dir_fd)


class AgentStore:
    """The agent's data directory."""

    def __init__(self, root: Path):
        self.root = Path(root)

    # -- layout ----------------------------------------------------------------------------------------------
    @property
    def credentials_path(self) -> Path:
        """The enrolment answer: device id, broker credentials, HTTP token and URLs (0600)."""
        return self.root / "credentials.json"

    @property
    def root_path(self) -> Path:
        """The county's trusted root metadata from enrolment (0600)."""
        return self.root / "root.json"

    @property
    def metadata_dir(self) -> Path:
        """ngclient's cache of verified TUF metadata."""
        return self.root / "tuf"

    @property
    def media_dir(self) -> Path:
        """Verified media files, named <sha256>.<ext>."""
        return self.root / "media"

    @property
    def partial_dir(self) -> Path:
        """Downloads in progress; never played from."""
        return self.root / "partial"

    @property
    def outbox_path(self) -> Path:
        """The SQLite event outbox."""
        return self.root / "outbox.db"

    def ensure(self) -> None:
        """Create the directories (private to the agent's user)."""
        for path in (self.root, self.metadata_dir, self.media_dir, self.partial_dir):
            path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    # -- JSON documents --------------------------------------------------------------------------------------
    def read_json(self, name: str) -> Optional[Any]:
        """A JSON document of the store, or None when it does not exist yet."""
        path = self.root / name
        try:
            return json.loads(path.read_bytes())
        except FileNotFoundError:
            return None

    def write_json(self, name: str, value: Any, private: bool = False) -> None:
        """Write a JSON document atomically."""
        data = json.dumps(value, ensure_ascii=False, sort_keys=True, indent=1).encode()
        write_atomic(self.root / name, data, 0o600 if private else 0o644)

    def enrolled(self) -> bool:
        """Whether this device has credentials."""
        return self.credentials_path.exists() and self.root_path.exists()

    def credentials(self) -> dict[str, Any]:
        """The stored enrolment answer."""
        return json.loads(self.credentials_path.read_bytes())

    def trusted_root(self) -> bytes:
        """The trust anchor the agent bootstraps ngclient with."""
        return self.root_path.read_bytes()

    # -- the verified programme ------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        """The manifest of the programme being played: switched atomically once all its media are verified."""
        return self.root / "manifest.json"

    def current_manifest(self) -> Optional[bytes]:
        """The bytes of the verified manifest in use, or None before the first complete sync."""
        try:
            return self.manifest_path.read_bytes()
        except FileNotFoundError:
            return None

    def media_file(self, path: str) -> Path:
        """Where the verified file of a manifest media path ('media/<sha>.<ext>') lives."""
        return self.media_dir / path.rpartition("/")[2]

    def has_media(self, path: str) -> bool:
        """Whether the file for a manifest media path is present (it got there only after verification)."""
        return self.media_file(path).is_file()
