"""Resumable uploads with the tus 1.0.0 protocol (core, creation, termination and expiration extensions).

A client creates an upload with its length and lesson metadata, then PATCHes bytes at offsets; after a dropped
connection it asks HEAD for the offset and continues. When the last byte arrives the file goes through the same
checks as a multipart upload and becomes a lesson.
"""

from __future__ import annotations

import base64
import binascii
import errno
import fcntl
import hashlib
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, Optional

from sqlalchemy import delete, func, select, update

from media.errors import MediaError
from server.errors import BadRequest, Conflict, Gone, Invalid, NoSpace, NotFound, TooLarge, TooMany
from server.i18n import _l
from server.lessons import service as lessons
from server.lessons.models import Upload
from server.services import Services

log = logging.getLogger(__name__)
TUS_VERSION = "1.0.0"
CHUNK = 1024 * 1024
# The offset is made durable (file fsynced, then the row updated) every CHECKPOINT bytes and at the end of a
# request, so a web process killed mid-PATCH loses at most this much. Smaller costs an fsync and a commit more often.
CHECKPOINT = 4 * CHUNK
# A staged file nobody holds and nobody has written for this long belongs to a request that died: sweep it.
ORPHAN_GRACE_S = 3600.0
_MAX_DIGITS = 19  # a byte count or offset beyond 9,999,999,999,999,999,999 is not a file


def byte_count(value: Optional[str]) -> Optional[int]:
    """A header holding a byte count as ASCII digits ("²" and "١٢" are digits to str.isdigit, not to us); None when
    it is missing or not a plain number."""
    if value is None or not value or len(value) > _MAX_DIGITS or not (value.isascii() and value.isdigit()):
        return None
    return int(value)


def parse_metadata(header: str) -> dict[str, str]:
    """Decode a tus Upload-Metadata header ("key base64,key2 base64") into text values."""
    result: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in header.split(","))):
        key, _, value = pair.partition(" ")
        try:
            result[key] = base64.b64decode(value, validate=True).decode("utf-8") if value else ""
        except (binascii.Error, UnicodeDecodeError):
            raise BadRequest("bad_metadata",
                             _l("Upload-Metadata value for '{key}' is not base64 of UTF-8 text.", key=key)) from None
    return result


def part_path(services: Services, upload_id: str) -> Path:
    """Where the bytes of an upload accumulate."""
    return services.upload_dir / f"tus-{upload_id}.part"


def create(services: Services, length: Optional[str], metadata: str, token_id: Optional[int],
           actor: str) -> Upload:
    """Start an upload of LENGTH bytes; metadata must carry at least the lesson title."""
    size = byte_count(length)
    if size is None:
        raise BadRequest("length_required",
                         _l("Send Upload-Length with the file's size in bytes as ASCII digits, such as "
                            "'Upload-Length: 1048576' (deferred length is not supported)."))
    limit = services.settings.max_upload_size
    if size > limit:
        raise TooLarge("too_large", _l("The file is {value:.1f} GB; the limit is {value2:.1f} GB "
                                       "(LESSONCAST_MAX_UPLOAD_SIZE).",
                                       value=size / 1024 ** 3, value2=limit / 1024 ** 3), limit=limit)
    if size == 0:
        raise Invalid("empty_file", _l("The file is empty (0 bytes). Copy it again from the source."))
    meta = parse_metadata(metadata)
    lessons.parse_meta(meta)  # refuse bad metadata now, not after gigabytes have arrived
    meta["created_by"] = actor  # who uploaded is the token's name, never what the client claims
    now = services.clock()
    _check_open_uploads(services, token_id, now)
    ensure_room(services, size)
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
        raise NotFound("upload_not_found", _l("There is no upload {upload_id}; it may have expired. Start again.",
                                              upload_id=upload_id))
    return upload


def append(services: Services, upload_id: str, offset_header: Optional[str], body: IO[bytes],
           content_length: Optional[int] = None) -> Upload:
    """Write the request body at the given offset; finish the upload when its last byte has arrived.

    Bytes past the declared length refuse the request and leave the upload where it was before it, so the
    client can resume; bytes that arrived are durable every CHECKPOINT bytes, whatever happens to this process.
    """
    get(services, upload_id)
    offset = byte_count(offset_header)
    if offset is None:
        raise BadRequest("offset_required",
                         _l("Send Upload-Offset with the number of bytes already uploaded, as ASCII digits."))
    path = part_path(services, upload_id)
    try:
        fh = open(path, "r+b", buffering=0)  # unbuffered: what write() returned is what the file holds
    except FileNotFoundError:
        _forget(services, upload_id)
        raise Gone("upload_lost", _l("The bytes of upload {upload_id} are gone from the server (removed by hand or "
                                     "lost with a disk). Start the upload again.",
                                     upload_id=upload_id)) from None
    with fh:
        # One writer per upload: a second PATCH racing the first waits, then sees the new offset and is refused.
        # The sweeper takes the same lock before it touches the file.
        fcntl.flock(fh, fcntl.LOCK_EX)
        upload = get(services, upload_id)
        if upload.lesson_id is not None or upload.error is not None:
            raise Conflict("upload_complete", _l("This upload is already complete."), offset=upload.offset)
        if offset != upload.offset:
            raise Conflict("offset_mismatch",
                           _l("Upload-Offset {offset} does not match the {offset2} bytes stored; ask with HEAD and "
                              "continue from there.",
                              offset=offset, offset2=upload.offset), offset=upload.offset)
        if content_length is not None and offset + content_length > upload.length:
            raise TooLarge("past_length",
                           _l("The body of {content_length} bytes at offset {offset} goes past the declared "
                              "Upload-Length of {length}; send at most {value} bytes.",
                              content_length=content_length,
                              offset=offset,
                              length=upload.length,
                              value=upload.length - offset),
                           offset=offset)
        if upload.offset < upload.length:
            _receive(services, upload, fh, body)
        upload = get(services, upload_id)
        if upload.offset == upload.length:
            # Also when a process died between the last byte and the lesson: the next PATCH (or the sweeper)
            # finishes it, so a complete upload never stays without its lesson.
            return _complete(services, upload)
    return upload


def _receive(services: Services, upload: Upload, fh: IO[bytes], body: IO[bytes]) -> None:
    """Copy the body to the file from the upload's offset, making the offset durable as it goes."""
    start = durable = written = upload.offset
    fh.truncate(start)  # bytes a killed request wrote after its last checkpoint are not counted: drop them
    fh.seek(start)
    try:
        while written < upload.length:
            chunk = body.read(min(CHUNK, upload.length - written))
            if not chunk:
                break
            view = memoryview(chunk)
            while view:
                n = fh.write(view)
                view = view[n:]
                written += n
            if written - durable >= CHECKPOINT:
                durable = _checkpoint(services, upload.id, fh, written)
        extra = body.read(1) if written == upload.length else b""
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            _checkpoint(services, upload.id, fh, written)
            raise
        fh.truncate(durable)
        raise NoSpace("disk_full", _l("The disk holding uploads filled up at byte {durable} of this upload. Free "
                                      "space on the server, then resume from there.",
                                      durable=durable), offset=durable) from None
    except BaseException:
        # A dropped connection: keep whatever arrived, that is what resuming is for.
        _checkpoint(services, upload.id, fh, written)
        raise
    if extra:
        # A chunked body longer than the file: refuse all of this request (it may be another file's bytes).
        fh.truncate(start)
        _checkpoint(services, upload.id, fh, start)
        raise TooLarge("past_length", _l("The body goes past the declared Upload-Length of {length}; nothing of it "
                                         "was kept. Send at most {value} bytes from offset {start}.",
                                         length=upload.length, value=upload.length - start, start=start),
                       offset=start)
    _checkpoint(services, upload.id, fh, written)


def _checkpoint(services: Services, upload_id: str, fh: IO[bytes], offset: int) -> int:
    """Make OFFSET bytes durable: fsync the file first, so the stored offset never counts bytes the disk lacks."""
    os.fsync(fh.fileno())
    _set_offset(services, upload_id, offset)
    return offset


def _set_offset(services: Services, upload_id: str, offset: int) -> None:
    with services.db.session() as session:
        # An update, not a load: the upload may have been cancelled while this request ran.
        session.execute(update(Upload).where(Upload.id == upload_id).values(offset=offset))


def _forget(services: Services, upload_id: str) -> None:
    with services.db.session() as session:
        session.execute(delete(Upload).where(Upload.id == upload_id))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _complete(services: Services, upload: Upload) -> Upload:
    """Turn a finished upload into a lesson, recording the lesson id or the refusal on the upload.

    Any other failure (the database, the disk) leaves the upload complete and unfinished with its bytes, so the
    next PATCH or the sweeper tries again.
    """
    path = part_path(services, upload.id)
    staged = lessons.StagedFile(path, _sha256(path), upload.length)
    try:
        lesson, _created = lessons.ingest(services, staged, upload.filename, lessons.parse_meta(upload.meta),
                                          upload.meta.get("created_by", "upload"))
    except MediaError as exc:
        _record(services, upload.id, None, exc.to_dict())
        path.unlink(missing_ok=True)
        raise
    _record(services, upload.id, lesson.id, None)
    path.unlink(missing_ok=True)
    return get(services, upload.id)


def _record(services: Services, upload_id: str, lesson_id: Optional[int], error: Optional[dict[str, Any]]) -> None:
    with services.db.session() as session:
        session.execute(update(Upload).where(Upload.id == upload_id).values(lesson_id=lesson_id, error=error))


def terminate(services: Services, upload_id: str) -> None:
    """Cancel an upload and delete its bytes."""
    get(services, upload_id)
    part_path(services, upload_id).unlink(missing_ok=True)
    _forget(services, upload_id)


def _open_uploads(now):
    """The condition for uploads still waiting for bytes (or for their lesson): not finished, not expired."""
    return (Upload.lesson_id.is_(None), Upload.error.is_(None), Upload.expires_at >= now)


def _check_open_uploads(services: Services, token_id: Optional[int], now) -> None:
    """Refuse a new upload when the token already holds as many unfinished ones as it may."""
    if token_id is None:
        return
    cap = services.settings.max_open_uploads
    with services.db.session() as session:
        held = session.scalars(select(Upload.id).where(Upload.token_id == token_id, *_open_uploads(now))
                               .order_by(Upload.created_at)).all()
    if len(held) >= cap:
        raise TooMany("too_many_uploads",
                      _l("This token has {count} unfinished uploads, the most it may hold "
                         "(LESSONCAST_MAX_OPEN_UPLOADS). Finish one, or cancel it with DELETE /api/v1/uploads/<id>, "
                         "then start this one.",
                         count=len(held)), open=list(held), limit=cap)


def _size_text(n: int) -> str:
    return f"{n / 1024**3:.1f} GB" if abs(n) >= 1024**3 else f"{n / 1024**2:.0f} MB"


def ensure_room(services: Services, size: int) -> None:
    """Refuse SIZE more bytes unless the upload disk holds them next to every unfinished upload's remaining bytes,
    keeping the free margin (507, saying how much is free)."""
    free = services.disk_free(services.upload_dir)
    margin = services.settings.upload_free_margin
    with services.db.session() as session:
        count, reserved = session.execute(
            select(func.count(Upload.id), func.coalesce(func.sum(Upload.length - Upload.offset), 0))
            .where(*_open_uploads(services.clock()))).one()
    room = free - margin - int(reserved)
    if size > room:
        raise NoSpace("insufficient_storage",
                      _l("The file is {value}, but the disk holding uploads has {value2} free, of which {value3} is "
                         "set aside for {count} unfinished uploads and {value4} is kept free "
                         "(LESSONCAST_UPLOAD_FREE_MARGIN). Free space on the server, or finish or cancel other "
                         "uploads, then try again.",
                         value=_size_text(size),
                         value2=_size_text(free),
                         value3=_size_text(int(reserved)),
                         count=count,
                         value4=_size_text(margin)),
                      free=free, reserved=int(reserved), margin=margin, room=max(0, room))


def expire(services: Services) -> int:
    """Delete unfinished uploads past their expiry; return how many."""
    now = services.clock()
    with services.db.session() as session:
        stale = session.scalars(select(Upload).where(Upload.expires_at < now, Upload.lesson_id.is_(None))).all()
        for upload in stale:
            part_path(services, upload.id).unlink(missing_ok=True)
            session.delete(upload)
        return len(stale)


@dataclass(frozen=True)
class Swept:
    """What one sweep did: orphaned files deleted, and uploads whose lesson it made after their process died."""

    deleted: list[str]
    finished: list[str]


def sweep(services: Services) -> Swept:
    """Delete files in the upload area that no live request or open upload owns, and finish complete uploads
    whose process died before it made the lesson.

    A staged multipart file is an orphan once no process holds its lock (the kernel drops the lock of a killed
    process) and nothing wrote it for ORPHAN_GRACE_S; a resumable upload's file, once its upload is gone or done.
    """
    now = services.clock()
    files = [p for p in services.upload_dir.iterdir() if p.is_file() and p.suffix == ".part"]
    tus_ids = [p.name[4:-5] for p in files if p.name.startswith("tus-")]
    with services.db.session() as session:
        open_rows = {row.id: row for row in session.scalars(
            select(Upload).where(Upload.id.in_(tus_ids), *_open_uploads(now)))}
    deleted, finished = [], []
    for path in files:
        upload = open_rows.get(path.name[4:-5]) if path.name.startswith("tus-") else None
        if upload is not None:
            if upload.offset == upload.length and _finish_abandoned(services, path, upload.id):
                finished.append(upload.id)
            continue
        if _age(path, now.timestamp()) >= ORPHAN_GRACE_S and _delete_unheld(path):
            deleted.append(path.name)
    if deleted or finished:
        log.info("upload sweep: deleted %s; made the lessons of %s", deleted, finished)
    return Swept(deleted, finished)


def _age(path: Path, now_s: float) -> float:
    try:
        return now_s - path.stat().st_mtime
    except FileNotFoundError:
        return -1.0


def _delete_unheld(path: Path) -> bool:
    """Delete PATH unless a live process holds its lock; whether it was deleted."""
    try:
        with open(path, "rb") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            path.unlink(missing_ok=True)
            return True
    except FileNotFoundError:
        return False


def _finish_abandoned(services: Services, path: Path, upload_id: str) -> bool:
    """Make the lesson of a complete upload nobody is finishing (its web process died); whether it did."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return False
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a request is finishing it right now
        upload = get(services, upload_id)
        if upload.lesson_id is not None or upload.error is not None or upload.offset != upload.length:
            return False
        try:
            _complete(services, upload)
        except MediaError as exc:
            log.info("upload %s was refused: %s", upload_id, exc.message)
    return True
