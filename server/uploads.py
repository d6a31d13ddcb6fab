"""Resumable uploads with the tus 1.0.0 protocol (core, creation, termination and expiration extensions).

A client creates an upload with its length and lesson metadata, then PATCHes bytes at offsets; after a dropped
connection it asks HEAD for the offset and continues. When the last byte arrives the file goes through the same
checks as a multipart upload and becomes a lesson.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import logging
import uuid
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, Optional

from sqlalchemy import select

from media.errors import MediaError
from server import lessons
from server.errors import ApiError
from server.models import Upload
from server.services import Services

log = logging.getLogger(__name__)
TUS_VERSION = "1.0.0"
CHUNK = 1024 * 1024


def parse_metadata(header: str) -> dict[str, str]:
    """Decode a tus Upload-Metadata header ("key base64,key2 base64") into text values."""
    result: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in header.split(","))):
        key, _, value = pair.partition(" ")
        try:
            result[key] = base64.b64decode(value, validate=True).decode("utf-8") if value else ""
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(400, "bad_metadata",
                           f"Upload-Metadata value for '{key}' is not base64 of UTF-8 text.") from None
    return result


def part_path(services: Services, upload_id: str) -> Path:
    """Where the bytes of an upload accumulate."""
    return services.upload_dir / f"tus-{upload_id}.part"


def create(services: Services, length: Optional[str], metadata: str, token_id: Optional[int],
           actor: str) -> Upload:
    """Start an upload of LENGTH bytes; metadata must carry at least the lesson title."""
    if length is None or not length.isdigit():
        raise ApiError(400, "length_required",
                       "Send Upload-Length with the file's size in bytes (deferred length is not supported).")
    size = int(length)
    limit = services.settings.max_upload_size
    if size > limit:
        raise ApiError(413, "too_large", f"The file is {size / 1024**3:.1f} GB; the limit is "
                       f"{limit / 1024**3:.1f} GB (LESSONCAST_MAX_UPLOAD_SIZE).", limit=limit)
    if size == 0:
        raise ApiError(422, "empty_file", "The file is empty (0 bytes). Copy it again from the source.")
    meta = parse_metadata(metadata)
    lessons.parse_meta(meta)  # refuse bad metadata now, not after gigabytes have arrived
    meta["created_by"] = actor  # who uploaded is the token's name, never what the client claims
    now = services.clock()
    upload = Upload(id=uuid.uuid4().hex, length=size, offset=0,
                    filename=lessons.display_name(meta.get("filename") or meta.get("name")), meta=meta,
                    token_id=token_id, created_at=now,
                    expires_at=now + timedelta(seconds=services.settings.upload_expiry))
    part_path(services, upload.id).touch()
    with services.db.session() as session:
        session.add(upload)
    return upload


def get(services: Services, upload_id: str) -> Upload:
    """The upload, or 404 (also for expired ones, which tus treats as gone)."""
    with services.db.session() as session:
        upload = session.get(Upload, upload_id)
    if upload is None or (upload.lesson_id is None and upload.error is None and upload.expires_at < services.clock()):
        raise ApiError(404, "upload_not_found", f"There is no upload {upload_id}; it may have expired. Start again.")
    return upload


def append(services: Services, upload_id: str, offset_header: Optional[str], body: IO[bytes]) -> Upload:
    """Write the request body at the given offset; finish the upload when its last byte has arrived."""
    upload = get(services, upload_id)
    if offset_header is None or not offset_header.isdigit():
        raise ApiError(400, "offset_required", "Send Upload-Offset with the number of bytes already uploaded.")
    path = part_path(services, upload_id)
    with open(path, "r+b") as fh:
        # One writer per upload: a second PATCH racing the first waits, then sees the new offset and is refused.
        fcntl.flock(fh, fcntl.LOCK_EX)
        upload = get(services, upload_id)
        if upload.offset >= upload.length:
            raise ApiError(409, "upload_complete", "This upload is already complete.")
        if int(offset_header) != upload.offset:
            raise ApiError(409, "offset_mismatch",
                           f"Upload-Offset {offset_header} does not match the {upload.offset} bytes stored; "
                           "ask with HEAD and continue from there.", offset=upload.offset)
        fh.seek(upload.offset)
        written = upload.offset
        try:
            while written < upload.length:
                chunk = body.read(min(CHUNK, upload.length - written))
                if not chunk:
                    break
                fh.write(chunk)
                written += len(chunk)
            extra = body.read(1)
        finally:
            # Keep whatever arrived, even when the connection dropped mid-request: that is what resuming is for.
            fh.flush()
            _set_offset(services, upload_id, written)
        if extra:
            raise ApiError(413, "past_length", f"The body goes past the declared Upload-Length of {upload.length}.")
    upload = get(services, upload_id)
    if upload.offset == upload.length:
        return _complete(services, upload)
    return upload


def _set_offset(services: Services, upload_id: str, offset: int) -> None:
    with services.db.session() as session:
        session.get(Upload, upload_id).offset = offset


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _complete(services: Services, upload: Upload) -> Upload:
    """Turn a finished upload into a lesson, recording the lesson id or the refusal on the upload."""
    path = part_path(services, upload.id)
    staged = lessons.StagedFile(path, _sha256(path), upload.length)
    error: Optional[dict[str, Any]] = None
    lesson_id: Optional[int] = None
    try:
        lesson, _created = lessons.ingest(services, staged, upload.filename, lessons.parse_meta(upload.meta),
                                          upload.meta.get("created_by", "upload"))
        lesson_id = lesson.id
    except MediaError as exc:
        error = exc.to_dict()
        raise
    finally:
        path.unlink(missing_ok=True)
        with services.db.session() as session:
            row = session.get(Upload, upload.id)
            row.lesson_id, row.error = lesson_id, error
    return get(services, upload.id)


def terminate(services: Services, upload_id: str) -> None:
    """Cancel an upload and delete its bytes."""
    get(services, upload_id)
    part_path(services, upload_id).unlink(missing_ok=True)
    with services.db.session() as session:
        session.delete(session.get(Upload, upload_id))


def expire(services: Services) -> int:
    """Delete unfinished uploads past their expiry; return how many."""
    now = services.clock()
    with services.db.session() as session:
        stale = session.scalars(select(Upload).where(Upload.expires_at < now, Upload.lesson_id.is_(None))).all()
        for upload in stale:
            part_path(services, upload.id).unlink(missing_ok=True)
            session.delete(upload)
        return len(stale)
