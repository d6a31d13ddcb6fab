"""Sync: refresh trust, fetch the channel manifest, download what is missing, verify, switch, prune.

Nothing is used before it is verified: media land in ``partial/`` and move into ``media/`` only after their length
and sha256 match the signed target info. The new programme replaces the old one only when all of its files are
present; anything that fails leaves the last verified programme playing.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, time as dtime, timedelta
from typing import Optional
from zoneinfo import ZoneInfo

from tuf.api import exceptions as tuf_exceptions

from playlists.manifest import ManifestError, media_of, parse_manifest
from playlists.trust import FetchError, TrustError, fetch_manifest, open_updater, verify_media

from device_agent.fetcher import DownloadError, HttpFetcher, StorageFull, TufFetcher
from device_agent.store import AgentStore, write_atomic

log = logging.getLogger(__name__)
RESERVE_BYTES = 64 * 1024 * 1024  # keep this much free for the outbox, logs and the OS
USAGE_FILE = "data_usage.json"


@dataclass
class SyncResult:
    """What a sync did, for status and the log."""

    state: str  # "idle" (up to date or switched), "deferred", "error"
    manifest_version: Optional[int] = None
    switched: bool = False
    downloaded_bytes: int = 0
    reason: str = ""
    stale: bool = False
    missing: list[str] = field(default_factory=list)
    # Why an "error": "network" (nothing answered, or not in full: try again soon), "refused" (something failed
    # verification: an attack or a broken server, never retried in a hurry) or "limit" (storage, data budget).
    problem: str = ""

    @property
    def transient(self) -> bool:
        """Whether trying again in a minute may well succeed."""
        return self.problem == "network"


NETWORK = "network: "  # how a network failure's sync_reason starts, so staff never read it as an attack


def in_window(window: Optional[list | tuple], local_now: datetime) -> bool:
    """Whether LOCAL_NOW falls in a download window ("HH:MM", "HH:MM"), which may cross midnight; None is always."""
    if not window:
        return True
    start, end = (dtime.fromisoformat(t) for t in window)
    now = local_now.time()
    return start <= now < end if start < end else now >= start or now < end


def metadata_expiry(store: AgentStore) -> Optional[datetime]:
    """When the last verified timestamp metadata expires (the device is 'stale' after that)."""
    try:
        signed = json.loads((store.metadata_dir / "timestamp.json").read_bytes())["signed"]
        return datetime.fromisoformat(signed["expires"].replace("Z", "+00:00"))
    except (OSError, ValueError, KeyError):
        return None


@dataclass(frozen=True)
class Urls:
    """Where a device fetches TUF metadata, manifests and media."""

    metadata: str
    targets: str
    media_base: str


def enrolled_urls(creds: dict) -> Urls:
    """The URLs from the enrolment answer; a repository or media URL in the retained config never replaces them.

    Enrolment is the one exchange the device trusts for where things are: it brought the root of trust and the broker
    address. A config message is signed by nobody. TUF would still refuse forged content from a host it named, but
    whoever can write that message (the server, a compromised or impersonated broker, anyone on a plaintext MQTT
    link) could send every device to a host of their choosing, to withhold updates, feed it false Date headers,
    collect its HTTP token, or make it fetch addresses on its own network. A device follows a move by enrolling again,
    as it does for a new broker address.
    """
    metadata = creds["metadata_url"]
    # An enrolment answer from before media_base_url existed: media live on the same server as the repository.
    media = creds.get("media_base_url") or metadata.removesuffix("tuf/metadata/")
    return Urls(metadata, creds["targets_url"], media)


class Syncer:
    """One device's sync, with its store, hardware storage, trusted time and HTTP fetchers."""

    def __init__(self, store: AgentStore, storage, timekeeper, *, quota_bytes: Optional[int] = None,
                 fetcher: Optional[HttpFetcher] = None, reserve_bytes: int = RESERVE_BYTES):
        self.store = store
        self.storage = storage
        self.time = timekeeper
        self.quota_bytes = quota_bytes
        creds = store.credentials()
        # The download stops short of the last RESERVE_BYTES of the real filesystem, whatever else filled it.
        self.fetcher = fetcher or HttpFetcher(token=creds.get("http_token"), on_date=timekeeper.observe_date_header,
                                              reserve_bytes=reserve_bytes)

    # -- data budget -----------------------------------------------------------------------------------------
    def _usage(self, month: str) -> int:
        usage = self.store.read_json(USAGE_FILE) or {}
        return int(usage.get(month, 0))

    def _add_usage(self, month: str, count: int) -> None:
        usage = self.store.read_json(USAGE_FILE) or {}
        usage = {month: int(usage.get(month, 0)) + count}  # only the current month matters
        self.store.write_json(USAGE_FILE, usage)

    # -- the sync ----------------------------------------------------------------------------------------------
    def run(self, config: dict, *, force: bool = False) -> SyncResult:
        """Sync the channel in CONFIG; FORCE ignores the download window (a resync command, a first sync)."""
        urls = enrolled_urls(self.store.credentials())
        # Learn the server's time first: after weeks at sea the device clock may have drifted, and the metadata
        # expiry must be judged against true time.
        self.fetcher.server_date(urls.metadata + "timestamp.json")
        now = self.time.now()
        zone = ZoneInfo(config.get("timezone") or "Asia/Shanghai")
        expiry = metadata_expiry(self.store)
        stale = expiry is not None and now > expiry
        if not force and not in_window(config.get("download_window"), now.astimezone(zone)):
            return SyncResult("deferred", reason="outside the download window", stale=stale)
        channel = config["channel"]
        target = f"channels/{channel}/manifest.json"
        try:
            updater, data, now = self._refresh(urls, target, now)
            manifest = parse_manifest(data)
            if manifest.channel != channel:
                raise TrustError(f"the signed manifest is for {manifest.channel}, not this device's {channel}")
            self.time.observe_signed(issued_at=manifest.issued_at, expires=metadata_expiry(self.store))
        except FetchError as exc:
            return SyncResult("error", reason=NETWORK + str(exc), stale=stale, problem="network")
        except (TrustError, ManifestError) as exc:
            stale = stale or "ExpiredMetadataError" in str(exc)
            return SyncResult("error", reason=str(exc), stale=stale, problem="refused")
        except Exception as exc:  # network down, server unreachable: keep playing, try again soon
            return SyncResult("error", reason=f"{NETWORK}{type(exc).__name__}: {exc}", stale=stale,
                              problem="network")
        stale = False
        current = self.store.current_manifest()
        if current == data:
            return SyncResult("idle", manifest.version)
        files = media_of(manifest)
        missing = {sha: item for sha, item in files.items() if not self.store.has_media(item.path)}
        need = sum(item.length for item in missing.values())
        problem = self._room_for(need, files, config, now)
        if problem:
            return SyncResult("error", manifest.version, reason=problem, missing=sorted(missing), problem="limit")
        before = self.fetcher.bytes_received
        try:
            for sha, item in sorted(missing.items(), key=lambda kv: kv[1].length):
                self._download(updater, urls.media_base, item)
        except (DownloadError, TrustError) as exc:
            got = self.fetcher.bytes_received - before
            self._add_usage(now.strftime("%Y-%m"), got)
            if isinstance(exc, StorageFull):  # no room: a limit, like a full quota, not worth a retry in a minute
                return SyncResult("error", manifest.version, downloaded_bytes=got, reason=str(exc),
                                  missing=sorted(missing), problem="limit")
            network = isinstance(exc, (DownloadError, FetchError))  # a file that arrived but does not match: refused
            return SyncResult("error", manifest.version, downloaded_bytes=got,
                              reason=(NETWORK if network else "") + str(exc), missing=sorted(missing),
                              problem="network" if network else "refused")
        got = self.fetcher.bytes_received - before
        self._add_usage(now.strftime("%Y-%m"), got)
        write_atomic(self.store.manifest_path, data)  # the switch: every file of it is present and verified
        self.prune(manifest)
        return SyncResult("idle", manifest.version, switched=True, downloaded_bytes=got)

    def _refresh(self, urls: Urls, target: str, now: datetime):
        """Refresh trusted metadata and fetch the manifest at reference time NOW; return (updater, bytes, time used).

        If the metadata looks expired only by a time a Date header set, and verifies by the device's own time, the
        Date was wrong (a hostile or broken mirror): it is refuted and the sync goes on by the device's own time.
        """
        try:
            return (*self._refresh_at(urls, target, now), now)
        except TrustError as exc:
            own = self.time.authentic()
            if not isinstance(exc.__cause__, tuf_exceptions.ExpiredMetadataError) or own > now - timedelta(minutes=1):
                raise
            updater, data = self._refresh_at(urls, target, own)  # raises if it does not verify by our own time either
            self.time.refute(now, own)
            return updater, data, own

    def _refresh_at(self, urls: Urls, target: str, reference: datetime):
        updater = open_updater(self.store.metadata_dir, self.store.trusted_root(), urls.metadata, urls.targets,
                               reference_time=reference, fetcher=TufFetcher(on_date=self.time.observe_date_header))
        return updater, fetch_manifest(updater, target, self.store.partial_dir / "manifests")

    def check_update(self, updates, device: str, config: dict):
        """Install this device's assigned agent release (``device_agent.update``), inside the download window and
        the data budget, verified through TUF like the programme; return the update's Outcome."""
        from device_agent.update import Outcome

        now = self.time.now()
        zone = ZoneInfo(config.get("timezone") or "Asia/Shanghai")
        if not in_window(config.get("download_window"), now.astimezone(zone)):
            return Outcome("deferred", reason="outside the download window")
        urls = enrolled_urls(self.store.credentials())
        updater = open_updater(self.store.metadata_dir, self.store.trusted_root(), urls.metadata, urls.targets,
                               reference_time=now, fetcher=TufFetcher(on_date=self.time.observe_date_header))
        month = now.strftime("%Y-%m")

        def room_for(need: int) -> str:
            budget_mb = config.get("data_budget_mb")
            used = self._usage(month)
            if budget_mb is not None and used + need > budget_mb * 1024 * 1024:
                return (f"the agent update ({need / 1e6:.1f} MB) would pass this month's data budget "
                        f"({budget_mb} MB, {used / 1e6:.1f} MB used); waiting for next month")
            if need > self.storage.free_bytes() - RESERVE_BYTES:
                return f"not enough storage for the agent update ({need / 1e6:.1f} MB)"
            return ""

        outcome = updates.check(updater, device, room_for)
        if outcome.downloaded_bytes:
            self._add_usage(month, outcome.downloaded_bytes)
        return outcome

    def _room_for(self, need: int, files, config: dict, now: datetime) -> str:
        budget_mb = config.get("data_budget_mb")
        if budget_mb is not None:
            used = self._usage(now.strftime("%Y-%m"))
            if used + need > budget_mb * 1024 * 1024:
                return (f"the download ({need / 1e6:.1f} MB) would pass this month's data budget "
                        f"({budget_mb} MB, {used / 1e6:.1f} MB used); keeping the current programme")
        free = self.storage.free_bytes() - RESERVE_BYTES
        if need > free:
            return (f"not enough storage: the new programme needs {need / 1e6:.1f} MB more, "
                    f"{max(0, free) / 1e6:.1f} MB free; keeping the current programme")
        if self.quota_bytes is not None:
            total = sum(item.length for item in files.values())
            if total > self.quota_bytes:
                return (f"the programme ({total / 1e6:.1f} MB) is over this device's storage quota "
                        f"({self.quota_bytes / 1e6:.1f} MB); keeping the current programme")
        return ""

    def _download(self, updater, base: str, item) -> None:
        name = item.path.rpartition("/")[2]
        partial = self.store.partial_dir / name
        self.fetcher.download(base.rstrip("/") + "/" + item.path, partial, item.length)
        try:
            verify_media(updater, item.path, partial)
        except TrustError:
            partial.unlink(missing_ok=True)  # a bad copy is thrown away, never kept
            raise
        os.replace(partial, self.store.media_file(item.path))

    def prune(self, manifest, keep: frozenset[str] = frozenset()) -> list[str]:
        """Delete media no longer in the verified manifest (and leftovers of abandoned downloads)."""
        wanted = {item.path.rpartition("/")[2] for item in media_of(manifest).values()} | set(keep)
        removed = []
        for path in self.store.media_dir.iterdir():
            if path.name not in wanted:
                path.unlink(missing_ok=True)
                removed.append(path.name)
        for path in self.store.partial_dir.glob("*"):
            if path.is_file() and path.name not in wanted:
                path.unlink(missing_ok=True)
        return removed
