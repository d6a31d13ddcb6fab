"""Content trust, the device side: the verified fetch with python-tuf's ngclient, and the errors both sides raise.

Devices fetch the channel manifests through ngclient (metadata checked against the root they enrolled with) and the
media bytes from content-addressed URLs with their own fetcher, checking each file with ``verify_media``. The
county's side, which signs, is ``playlists.trust_repository``.

ngclient reads the system clock itself for expiry checks; that is tuf's choice, and the agent guards it with a
persisted time floor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import IO
from urllib.parse import unquote

from tuf.api import exceptions as tuf_exceptions
from tuf.api.metadata import TargetFile
from tuf.ngclient import FetcherInterface, Updater

_READ_CHUNK = 1 << 16


class TrustError(Exception):
    """Something about keys, signed metadata or verified content is wrong; the message says what and what to do."""


class FetchError(TrustError):
    """Signed metadata or a target could not be fetched (no answer, an HTTP error, too slow): nothing was found false,
    nothing was accepted, and trying again soon is the fix. A body longer than allowed is not this: it is refused."""


def as_utc(now: datetime) -> datetime:
    """NOW in UTC; a TrustError for a naive time, which could be any instant."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise TrustError(f"time {now.isoformat()} has no time zone: pass an aware UTC datetime")
    return now.astimezone(timezone.utc)


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class FileFetcher(FetcherInterface):
    """A tuf fetcher that serves URLs under ``base_url`` from files under ``directory`` (packs, tests).

    ``aliases`` maps a relative URL to another relative file path, for layouts whose file names differ from the
    names ngclient asks for (a pack keeps ``snapshot.json`` where ngclient asks for ``7.snapshot.json``). Missing
    files answer like an HTTP 404, which ngclient needs to learn that no newer root exists.
    """

    def __init__(self, base_url: str, directory: Path, *, aliases: Mapping[str, str] | None = None):
        self.base_url = base_url if base_url.endswith("/") else f"{base_url}/"
        self.directory = Path(directory)
        self.aliases = dict(aliases or {})

    def add_alias(self, relative_url: str, relative_file: str) -> None:
        """Serve ``relative_file`` when ngclient asks for ``relative_url``."""
        self.aliases[relative_url] = relative_file

    def _fetch(self, url: str) -> Iterator[bytes]:
        if not url.startswith(self.base_url):
            raise tuf_exceptions.DownloadHTTPError(f"{url} is outside {self.base_url}", 404)
        relative = unquote(url[len(self.base_url):])
        relative = self.aliases.get(relative, relative)
        parts = relative.split("/")
        if relative.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise tuf_exceptions.DownloadHTTPError(f"{url} does not name a file under {self.base_url}", 404)
        path = self.directory.joinpath(*parts)
        if not path.is_file():
            raise tuf_exceptions.DownloadHTTPError(f"{url}: no file {path}", 404)
        return _chunks(path)


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            yield chunk


def open_updater(metadata_dir: Path, trusted_root: bytes, metadata_base_url: str, targets_base_url: str, *,
                 fetcher: FetcherInterface | None = None, reference_time: datetime | None = None) -> Updater:
    """An ngclient Updater anchored on ``trusted_root`` that caches verified metadata in ``metadata_dir``.

    ngclient judges expiry by the system clock. A device whose clock may be wrong passes ``reference_time`` (its
    trusted time, never below its persisted floor), which replaces that reading for this refresh.
    """
    metadata_dir = Path(metadata_dir)
    metadata_dir.mkdir(parents=True, exist_ok=True)
    try:
        updater = Updater(str(metadata_dir), metadata_base_url, None, targets_base_url, fetcher,
                          bootstrap=trusted_root)
    except (tuf_exceptions.RepositoryError, ValueError) as error:
        raise TrustError(f"the trusted root.json is not valid TUF root metadata ({_describe(error)}): re-enrol the "
                         "device with the county's root.json") from error
    if reference_time is not None:
        # tuf 7 keeps the time it checks expiry against on its trusted set (set once, from the system clock).
        trusted_set = getattr(updater, "_trusted_set", None)
        if trusted_set is None or not hasattr(trusted_set, "reference_time"):
            raise TrustError("this python-tuf version has no reference time to set; pin tuf to 7.x")
        trusted_set.reference_time = as_utc(reference_time)
    return updater


@contextlib.contextmanager
def _tuf_errors(what: str) -> Iterator[None]:
    try:
        yield
    except (tuf_exceptions.RepositoryError, tuf_exceptions.DownloadError) as error:
        # A body longer than allowed (endless data) is an attack, not a flaky link: it is refused like a bad signature.
        if isinstance(error, tuf_exceptions.DownloadError) and not isinstance(
                error, tuf_exceptions.DownloadLengthMismatchError):
            raise FetchError(f"{what} could not be fetched ({_describe(error)}): nothing from this update was "
                             "accepted; keep playing the last verified programme and try again soon") from error
        raise TrustError(f"{what} failed verification ({_describe(error)}): nothing from this update was "
                         "accepted; keep playing the last verified programme and retry, or report the county "
                         "server if it persists") from error


def _target_info(updater: Updater, target_path: str) -> TargetFile:
    # get_targetinfo refreshes top-level metadata on first use (ngclient allows one refresh per Updater), so callers
    # can verify many targets with one updater.
    with _tuf_errors(f"refreshing signed metadata for {target_path}"):
        info = updater.get_targetinfo(target_path)
    if info is None:
        raise TrustError(f"{target_path} is not in the county's signed targets: it was not published (or was "
                         "withdrawn); do not use it")
    return info


def fetch_manifest(updater: Updater, target_path: str, dest_dir: Path) -> bytes:
    """Refresh trusted metadata, then download (or reuse the cached copy of) ``target_path`` and return its bytes."""
    info = _target_info(updater, target_path)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    filepath = str(dest_dir / f"{info.hashes['sha256']}.{info.path.rpartition('/')[2]}")
    with _tuf_errors(f"downloading {target_path}"):
        cached = updater.find_cached_target(info, filepath)
        path = cached or updater.download_target(info, filepath)
    data = Path(path).read_bytes()
    with _tuf_errors(f"re-reading {target_path} from {path}"):
        info.verify_length_and_hashes(data)  # the bytes we return are the bytes we checked
    return data


def verify_media(updater: Updater, target_path: str, data_or_path: bytes | Path | str | IO[bytes]) -> None:
    """Raise TrustError unless the file or bytes match ``target_path``'s signed length and sha256."""
    info = _target_info(updater, target_path)
    name = str(data_or_path) if isinstance(data_or_path, (str, Path)) else target_path
    try:
        if isinstance(data_or_path, (str, Path)):
            with open(data_or_path, "rb") as handle:
                info.verify_length_and_hashes(handle)
        else:
            info.verify_length_and_hashes(data_or_path)
    except tuf_exceptions.LengthOrHashMismatchError as error:
        raise TrustError(f"{name} does not match the signed length and hash of {target_path} "
                         f"({_describe(error)}): delete it and download it again") from error
    except FileNotFoundError as error:
        raise TrustError(f"{name} is missing: download {target_path} again") from error
