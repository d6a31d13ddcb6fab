"""HTTP for the agent: a resumable media downloader and a TUF fetcher, both reporting the server's Date header.

Downloads resume with ``Range`` after a dropped connection, have connect and read timeouts and a minimum transfer
rate, and never write past the file's signed length.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import urllib3
from tuf.api import exceptions as tuf_exceptions
from tuf.ngclient import FetcherInterface


class DownloadError(Exception):
    """A download could not be completed now; the next sync tries again, resuming where it stopped."""


class SlowTransfer(DownloadError):
    """The transfer ran below the minimum rate: a failed attempt even though some bytes arrived."""


class StorageFull(DownloadError):
    """The device's storage filled up during a download. Not a network problem: retrying will not help until room is
    made, and the partial copy is removed at once so the outbox, the logs and the OS keep their room."""


FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)

DRAIN_LIMIT = 64 * 1024  # an error answer's body is read and thrown away up to this size; a longer one closes the link


def give_back(response, *, drain: int = 0) -> None:
    """Return RESPONSE's connection to the pool only when none of the answer is left unread on it.

    A pooled connection that still holds the rest of an answer (a 404's JSON body, bytes past a signed length) makes
    the next request on it read that leftover as its status line (``BadStatusLine('{"error":...')``). Up to DRAIN
    bytes are read and thrown away; when more is left (or DRAIN is 0), the connection is closed instead of reused.
    """
    try:
        read = 0
        while not response.closed and read <= drain:
            chunk = response.read(min(8192, drain + 1 - read)) if drain else b""
            if not chunk:
                break
            read += len(chunk)
    except (urllib3.exceptions.HTTPError, OSError):
        pass
    if not response.closed:
        response.close()  # the rest of the answer would poison the next request on this connection
    response.release_conn()


@dataclass(frozen=True)
class FetchLimits:
    """Timeouts and the slowest acceptable transfer."""

    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    min_rate: float = 256.0  # bytes per second, averaged over `rate_window`
    rate_window: float = 60.0
    attempts: int = 20  # reconnects within one download before giving up for this sync
    backoff: float = 1.0


class HttpFetcher:
    """Downloads media to a partial file, resuming it across dropped connections and across agent restarts."""

    def __init__(self, *, token: Optional[str] = None, limits: FetchLimits = FetchLimits(),
                 on_date: Callable[[Optional[str]], None] = lambda _d: None, sleep=time.sleep,
                 reserve_bytes: int = 0):
        self.token = token
        self.reserve_bytes = reserve_bytes  # a download stops before the filesystem's free space drops below this
        self.limits = limits
        self.on_date = on_date
        self.sleep = sleep
        self.bytes_received = 0  # payload bytes over the wire, for the data budget and the tests
        self._pool = urllib3.PoolManager(retries=False)

    def _headers(self, start: int) -> dict[str, str]:
        headers = {"User-Agent": "lessoncast-agent"}
        if start:
            headers["Range"] = f"bytes={start}-"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def server_date(self, url: str) -> bool:
        """Ask URL for its headers only, to learn the server's time; False when the server cannot be reached."""
        timeout = urllib3.Timeout(connect=self.limits.connect_timeout, read=self.limits.read_timeout)
        try:
            response = self._pool.request("HEAD", url, headers=self._headers(0), timeout=timeout)
        except (urllib3.exceptions.HTTPError, OSError):
            return False
        self.on_date(response.headers.get("Date"))
        return True

    def download(self, url: str, partial: Path, length: int) -> Path:
        """Fetch URL into PARTIAL until it holds LENGTH bytes; raises DownloadError (the partial file stays)."""
        partial.parent.mkdir(parents=True, exist_ok=True)
        last_error = "no attempt made"
        failures = 0
        while failures < self.limits.attempts:
            have = partial.stat().st_size if partial.exists() else 0
            if have > length:
                partial.unlink()  # longer than signed: never trust it
                have = 0
            if have == length:
                return partial
            try:
                self._fetch_from(url, partial, have, length)
            except StorageFull:
                partial.unlink(missing_ok=True)  # give the room back to the outbox, the logs and the OS
                raise
            except (urllib3.exceptions.HTTPError, OSError, DownloadError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                now_have = partial.stat().st_size if partial.exists() else 0
                if now_have > have and not isinstance(exc, SlowTransfer):
                    continue  # it moved forward: resume at once (a trickle is no progress: it must give up)
                failures += 1
                self.sleep(min(30.0, self.limits.backoff * (2 ** failures)))
        raise DownloadError(f"{url}: gave up after {self.limits.attempts} failed attempts ({last_error})")

    def _fetch_from(self, url: str, partial: Path, have: int, length: int) -> None:
        timeout = urllib3.Timeout(connect=self.limits.connect_timeout, read=self.limits.read_timeout)
        response = self._pool.request("GET", url, headers=self._headers(have), preload_content=False,
                                      timeout=timeout)
        try:
            self.on_date(response.headers.get("Date"))
            if response.status == 416 and have:
                partial.unlink(missing_ok=True)  # the server's file is not what we started: begin again
                raise DownloadError("the server refused the resume offset; starting again")
            if response.status >= 400:
                raise DownloadError(f"HTTP {response.status}")
            if have and response.status != 206:
                have = 0  # the server ignored Range: start again from the beginning
            mode = "ab" if have else "wb"
            try:
                have = self._write(response, partial, mode, have, length)
            except OSError as exc:
                if exc.errno in FULL_ERRNOS:
                    raise StorageFull(self._full(partial, length)) from exc
                raise
            if have < length:
                raise DownloadError(f"connection closed at {have} of {length} bytes")
        finally:
            give_back(response, drain=DRAIN_LIMIT if response.status >= 400 else 0)

    def _full(self, partial: Path, length: int) -> str:
        reached = partial.stat().st_size if partial.exists() else 0
        return (f"{partial.name}: no space left on the device's storage after {reached} of {length} bytes; the "
                "partial copy was removed. Free some storage and sync again")

    def _free(self, directory: Path) -> int:
        stat = os.statvfs(directory)
        return stat.f_bavail * stat.f_frsize

    def _write(self, response, partial: Path, mode: str, have: int, length: int) -> int:
        """Append the response's body to PARTIAL, never past LENGTH bytes, and never below the storage reserve;
        return how many bytes PARTIAL holds."""
        window_start, window_bytes = time.monotonic(), 0
        with open(partial, mode) as out:
            # read1 hands over whatever has arrived, so a dropped connection keeps every byte received so far.
            for chunk in iter(lambda: response.read1(64 * 1024), b""):
                self.bytes_received += len(chunk)  # over the wire, kept or not: the data budget pays for it
                if self.reserve_bytes and self._free(partial.parent) - len(chunk) < self.reserve_bytes:
                    raise StorageFull(self._full(partial, length) + f" (keeping {self.reserve_bytes} bytes free)")
                room = length - have
                if len(chunk) > room:
                    out.write(chunk[:room])  # never past the signed length; verification will decide
                    have = length
                    break
                out.write(chunk)
                have += len(chunk)
                window_bytes += len(chunk)
                elapsed = time.monotonic() - window_start
                if elapsed >= self.limits.rate_window:
                    if window_bytes / elapsed < self.limits.min_rate:
                        raise SlowTransfer(f"slower than {self.limits.min_rate:.0f} B/s")
                    window_start, window_bytes = time.monotonic(), 0
            out.flush()
            os.fsync(out.fileno())
        return have


class TufFetcher(FetcherInterface):
    """ngclient's fetcher over urllib3 with timeouts, reporting each response's Date header."""

    def __init__(self, *, limits: FetchLimits = FetchLimits(), on_date: Callable[[Optional[str]], None]):
        self.limits = limits
        self.on_date = on_date
        self._pool = urllib3.PoolManager(retries=False)

    def _fetch(self, url: str) -> Iterator[bytes]:
        timeout = urllib3.Timeout(connect=self.limits.connect_timeout, read=self.limits.read_timeout)
        try:
            response = self._pool.request("GET", url, preload_content=False, timeout=timeout)
        except urllib3.exceptions.TimeoutError as exc:
            raise tuf_exceptions.SlowRetrievalError from exc
        except urllib3.exceptions.HTTPError as exc:
            raise tuf_exceptions.DownloadError(f"{url}: {exc}") from exc
        self.on_date(response.headers.get("Date"))
        if response.status >= 400:
            give_back(response, drain=DRAIN_LIMIT)
            raise tuf_exceptions.DownloadHTTPError(f"HTTP {response.status} for {url}", response.status)
        return self._chunks(response)

    @staticmethod
    def _chunks(response) -> Iterator[bytes]:
        try:
            yield from response.stream(64 * 1024)
        except urllib3.exceptions.TimeoutError as exc:
            raise tuf_exceptions.SlowRetrievalError from exc
        except urllib3.exceptions.HTTPError as exc:
            raise tuf_exceptions.DownloadError(str(exc)) from exc
        finally:
            give_back(response)  # ngclient may stop early (a body past its length limit): never reuse the rest
