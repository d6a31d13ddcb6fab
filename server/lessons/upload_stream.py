"""Uploads stream to disk in the data directory and are hashed as they arrive, never held in memory."""

from __future__ import annotations

import fcntl
import hashlib
import uuid
from pathlib import Path
from typing import IO, Optional

from flask import Request, g

from server.services import app_services


class HashingFile:
    """A file in the upload directory that computes its sha256 and size while it is written."""

    def __init__(self, directory: Path):
        self.path = directory / f"{uuid.uuid4().hex}.part"
        self._fh: IO[bytes] = open(self.path, "w+b")
        # Held until the file is closed; the upload sweeper leaves a locked file alone, and the kernel drops the
        # lock of a killed process, so a request that died leaves a file the sweeper may take.
        fcntl.flock(self._fh, fcntl.LOCK_EX)
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        """Write and hash a chunk."""
        self._hash.update(data)
        self.size += len(data)
        return self._fh.write(data)

    @property
    def sha256(self) -> str:
        """Hex sha256 of everything written."""
        return self._hash.hexdigest()

    def close_file(self) -> None:
        """Flush and close the file, keeping it on disk for the next step."""
        if not self._fh.closed:
            self._fh.flush()
            self._fh.close()

    def discard(self) -> None:
        """Close and delete the file."""
        self.close_file()
        self.path.unlink(missing_ok=True)

    # Werkzeug's multipart parser and FileStorage use these.
    def read(self, n: int = -1) -> bytes:
        return self._fh.read(n)

    def readline(self, n: int = -1) -> bytes:
        return self._fh.readline(n)

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._fh.seek(pos, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self.close_file()

    @property
    def closed(self) -> bool:
        return self._fh.closed


class LessoncastRequest(Request):
    """A request whose uploaded files go to HashingFiles; any not taken over by the view are deleted at teardown."""

    def _get_file_stream(self, total_content_length: Optional[int], content_type: Optional[str],
                         filename: Optional[str] = None, content_length: Optional[int] = None):
        services = app_services()
        staged = HashingFile(services.upload_dir)
        g.setdefault("staged_files", []).append(staged)
        return staged


def discard_unclaimed(_exc: Optional[BaseException] = None) -> None:
    """Teardown: delete every staged upload of this request that the view did not move away."""
    for staged in g.pop("staged_files", []):
        staged.discard()
