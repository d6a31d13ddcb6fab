"""Content-addressed storage for renditions and source files: one interface, a filesystem implementation."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Optional, Protocol

SHA256 = re.compile(r"^[0-9a-f]{64}$")
EXTENSION = re.compile(r"^[a-z0-9]{1,8}$")
# How stored files are served: their media types, and caching (a file's name is its hash, so it never changes).
MIMETYPES = {"mp3": "audio/mpeg", "m4a": "audio/mp4", "mp4": "video/mp4", "jpg": "image/jpeg"}
ONE_YEAR = 365 * 86400
CACHE_FOREVER = f"public, max-age={ONE_YEAR}, immutable"


class MediaStore(Protocol):
    """Where immutable media lives, addressed by sha256 and extension."""

    def put(self, src: Path, sha256: str, extension: str) -> None:
        """Move SRC into the store under its hash (a no-op, deleting SRC, when already stored)."""

    def path(self, sha256: str, extension: str) -> Optional[Path]:
        """The local file for a stored object, or None when absent."""

    def delete(self, sha256: str, extension: str) -> None:
        """Remove a stored object if present."""


def check_key(sha256: str, extension: str) -> None:
    """Refuse anything that is not a lower-case sha256 and a short alphanumeric extension."""
    if not SHA256.match(sha256) or not EXTENSION.match(extension):
        raise ValueError(f"not a store key: {sha256!r}.{extension!r}")


class FilesystemStore:
    """Files under ROOT/ab/<sha256>.<ext>; the two-character fan-out keeps directories small."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _file(self, sha256: str, extension: str) -> Path:
        check_key(sha256, extension)
        return self.root / sha256[:2] / f"{sha256}.{extension}"

    def put(self, src: Path, sha256: str, extension: str) -> None:
        """Move SRC into the store atomically (same filesystem: rename; else copy then rename)."""
        dst = self._file(sha256, extension)
        if dst.exists():
            Path(src).unlink(missing_ok=True)
            return
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + ".part")
        try:
            os.replace(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
            Path(src).unlink(missing_ok=True)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dst)

    def path(self, sha256: str, extension: str) -> Optional[Path]:
        """The stored file, or None."""
        dst = self._file(sha256, extension)
        return dst if dst.is_file() else None

    def delete(self, sha256: str, extension: str) -> None:
        """Remove the stored file if present."""
        self._file(sha256, extension).unlink(missing_ok=True)

    def count(self) -> int:
        """How many objects the store holds (for tests and operations)."""
        return sum(1 for p in self.root.glob("??/*") if not p.name.endswith(".part")) if self.root.exists() else 0
