"""Content trust, the county's side: its TUF repository with the four top-level roles, and its keys.

The root key lives encrypted under a passphrase and is only needed for ``init_keys`` and ``rotate_root``; the online
keys (targets, snapshot, timestamp) sign every publish and re-sign. Targets are the channel manifests (whose bytes
the repository serves under consistent-snapshot names) and the media files (only their length and hash are signed;
devices check the bytes with ``playlists.trust.verify_media``).

Nothing here reads the clock: every operation takes ``now``.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from securesystemslib.signer import CryptoSigner, Signer
from tuf import repository as tuf_repository
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp

from playlists.trust import TrustError, as_utc

AGENT_PREFIX = "agent/"  # agent releases and their assignments (playlists.agent_release)
ONLINE_ROLES = (Targets.type, Snapshot.type, Timestamp.type)
ALL_ROLES = (Root.type, *ONLINE_ROLES)
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_TARGET_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_KEY_FILES = {role: f"{role}.pem" for role in ALL_ROLES}
_ROTATION_PLAN = "rotation.json"


@dataclass(frozen=True)
class Expiries:
    """How long each online role's metadata stays valid after it is signed, in days."""

    targets_days: float = 90
    snapshot_days: float = 7
    timestamp_days: float = 1

    def lifetime(self, role: str) -> timedelta:
        """The validity period of a freshly signed ``role``."""
        return timedelta(days={Targets.type: self.targets_days, Snapshot.type: self.snapshot_days,
                               Timestamp.type: self.timestamp_days}[role])


@dataclass(frozen=True)
class Versions:
    """The current version of each top-level role."""

    root: int
    targets: int
    snapshot: int
    timestamp: int


def _check_target_path(path: str) -> str:
    """A target path is a relative URL path; refuse anything that could escape the targets directory."""
    segments = path.split("/")
    if not path or path.startswith("/") or not all(_TARGET_SEGMENT.match(s) and s not in (".", "..")
                                                   for s in segments):
        raise TrustError(f"target path {path!r} is not a plain relative path (letters, digits, '._-' segments "
                         "joined by '/'): fix the name the server publishes")
    return path


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _days_left(expires: datetime, now: datetime) -> str:
    left = expires - now
    if left >= timedelta(days=2):
        return f"in {left.days} days"
    return f"in {max(0, int(left.total_seconds() // 3600))} h"


def _key_bytes(key: Ed25519PrivateKey, passphrase: str | None) -> bytes:
    # The root key is stored encrypted with the passphrase; online keys must sign unattended, so they are not.
    encryption = BestAvailableEncryption(passphrase.encode()) if passphrase else NoEncryption()
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encryption)


def _load_signer(path: Path, passphrase: str | None) -> CryptoSigner:
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        raise TrustError(f"key file {path} is missing: restore the keys directory, or run "
                         "`lessoncast keys init` for a new county") from None
    try:
        key = load_pem_private_key(pem, passphrase.encode() if passphrase is not None else None)
    except (ValueError, TypeError) as error:
        if passphrase is not None:
            raise TrustError(f"root key passphrase is wrong (or {path} is damaged): type the passphrase chosen "
                             "at `lessoncast keys init` (or at the last `lessoncast keys rotate-root`)") from error
        raise TrustError(f"key file {path} cannot be read ({error}): restore it from the backup") from error
    if not isinstance(key, Ed25519PrivateKey):
        raise TrustError(f"key file {path} is not an Ed25519 key: restore the keys directory from the backup")
    return CryptoSigner(key)


def _validate_passphrase(passphrase: str) -> None:
    if not passphrase:
        raise TrustError("the root key passphrase is empty: choose a passphrase (it protects the county's root key)")


def init_keys(keys_dir: Path, repo_dir: Path, passphrase: str, *, now: datetime, root_days: int = 365,
              expiries: Expiries | None = None) -> None:
    """Create the county's four keys and the first signed version of every role; refuse to overwrite anything."""
    now = as_utc(now)
    _validate_passphrase(passphrase)
    keys_dir, repo_dir = Path(keys_dir), Path(repo_dir)
    existing = [keys_dir / name for name in _KEY_FILES.values() if (keys_dir / name).exists()]
    existing += [p for p in (repo_dir / "metadata" / "root.json", repo_dir / "metadata" / "1.root.json") if p.exists()]
    if existing:
        raise TrustError(f"keys or metadata already exist ({', '.join(map(str, existing))}): refusing to overwrite "
                         "a county's keys; use `lessoncast keys rotate-root` to change them")
    keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    keys = {role: Ed25519PrivateKey.generate() for role in ALL_ROLES}
    for role, key in keys.items():
        _write_atomic(keys_dir / _KEY_FILES[role], _key_bytes(key, passphrase if role == Root.type else None),
                      mode=0o600)
    Repository(repo_dir, keys_dir, expiries or Expiries())._initialise(
        {role: CryptoSigner(key) for role, key in keys.items()}, now=now, root_days=root_days)


class Repository(tuf_repository.Repository):
    """The county's TUF repository on disk: publishes targets and keeps the online roles signed and fresh.

    It implements python-tuf's ``tuf.repository.Repository`` (``open``/``close``); every public method works in a
    session that holds a file lock on the repository, loads the current metadata chain
    (timestamp.json -> N.snapshot.json -> N.targets.json) and writes timestamp.json last, so the timestamp is the
    commit point and a crash in between leaves clients on the previous consistent version.
    """

    def __init__(self, repo_dir: Path, keys_dir: Path, expiries: Expiries = Expiries()):
        self.repo_dir = Path(repo_dir)
        self.keys_dir = Path(keys_dir)
        self.expiries = expiries
        self._metadata: dict[str, Metadata] = {}
        self._raw: dict[str, bytes] = {}
        self._signers: dict[str, list[Signer]] = {}
        self._now: datetime | None = None
        self._expires_override: datetime | None = None
        self._root_days = 365

    @property
    def metadata_dir(self) -> Path:
        """Where the metadata files live (served as /tuf/metadata/)."""
        return self.repo_dir / "metadata"

    @property
    def targets_dir(self) -> Path:
        """Where the manifest target files live (served as /tuf/targets/)."""
        return self.repo_dir / "targets"

    # -- tuf.repository.Repository interface -------------------------------------------------------------------

    def open(self, role: str) -> Metadata:
        """The current metadata of ``role`` (a copy), or a version-0 blank one that ``close`` turns into version 1."""
        if role in self._metadata:
            return copy.deepcopy(self._metadata[role])
        signed = {Root.type: Root, Targets.type: Targets, Snapshot.type: Snapshot, Timestamp.type: Timestamp}[role]()
        signed.version = 0
        return Metadata(signed)

    def close(self, role: str, md: Metadata) -> None:
        """Bump the version, set the expiry, sign with the role's keys and store the file atomically."""
        now = self._require_now()
        md.signed.version += 1
        if role == Root.type:
            md.signed.expires = now + timedelta(days=self._root_days)
        else:
            md.signed.expires = self._expires_override or now + self.expiries.lifetime(role)
        md.signatures.clear()
        for signer in self._signers_for(role):
            md.sign(signer, append=True)
        data = md.to_bytes()
        names = {Root.type: [f"{md.signed.version}.root.json", "root.json"],
                 Targets.type: [f"{md.signed.version}.targets.json"],
                 Snapshot.type: [f"{md.signed.version}.snapshot.json"],
                 Timestamp.type: ["timestamp.json"]}[role]
        for name in names:
            _write_atomic(self.metadata_dir / name, data)
        self._metadata[role] = md
        self._raw[role] = data

    @property
    def targets_infos(self) -> dict[str, MetaFile]:
        """Snapshot's entry for the current targets metadata, with length and sha256 of the exact bytes served."""
        return {"targets.json": MetaFile.from_data(self._metadata[Targets.type].signed.version,
                                                   self._raw[Targets.type], ["sha256"])}

    @property
    def snapshot_info(self) -> MetaFile:
        """Timestamp's entry for the current snapshot metadata, with length and sha256."""
        return MetaFile.from_data(self._metadata[Snapshot.type].signed.version, self._raw[Snapshot.type], ["sha256"])

    # -- sessions, loading and keys ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _session(self, now: datetime | None, *, fresh: bool = False) -> Iterator[None]:
        self.repo_dir.mkdir(parents=True, exist_ok=True)
        with open(self.repo_dir / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._now = as_utc(now) if now is not None else None
                self._metadata, self._raw, self._signers = {}, {}, {}
                if not fresh:
                    self._load()
                    self._finish_interrupted_rotation()
                yield
            finally:
                self._now, self._expires_override = None, None
                self._metadata, self._raw, self._signers = {}, {}, {}
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _require_now(self) -> datetime:
        if self._now is None:
            raise TrustError("signing needs the current time: pass now=")
        return self._now

    def _read(self, name: str, role: str) -> None:
        path = self.metadata_dir / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise TrustError(f"{path} is missing: the repository at {self.repo_dir} is not initialised "
                             "(run `lessoncast keys init`) or was damaged (restore it from the backup)") from None
        self._raw[role] = data
        self._metadata[role] = Metadata.from_bytes(data)

    def _latest_root_name(self) -> str:
        versions = [int(p.name.split(".")[0]) for p in self.metadata_dir.glob("*.root.json")
                    if p.name.split(".")[0].isdigit()]
        if not versions:
            raise TrustError(f"{self.metadata_dir} holds no N.root.json: the repository is not initialised "
                             "(run `lessoncast keys init`) or was damaged (restore it from the backup)")
        return f"{max(versions)}.root.json"

    def _load(self) -> None:
        """Load the committed chain: the newest N.root.json, timestamp.json and the versions it names."""
        # Clients walk N.root.json, so the newest of those is the truth; root.json is a convenience copy that a
        # crash between the two writes can leave behind, so repair it.
        self._read(self._latest_root_name(), Root.type)
        if self._now is not None and (not (self.metadata_dir / "root.json").exists()
                                      or (self.metadata_dir / "root.json").read_bytes() != self._raw[Root.type]):
            _write_atomic(self.metadata_dir / "root.json", self._raw[Root.type])
        self._read("timestamp.json", Timestamp.type)
        self._read(f"{self._metadata[Timestamp.type].signed.snapshot_meta.version}.snapshot.json", Snapshot.type)
        self._read(f"{self._metadata[Snapshot.type].signed.meta['targets.json'].version}.targets.json", Targets.type)

    def _root(self) -> Root:
        return self._metadata[Root.type].signed

    def _signers_for(self, role: str) -> list[Signer]:
        if role not in self._signers:
            if role == Root.type:
                raise TrustError("signing root needs the root key: run the command that asks for the passphrase")
            signer = _load_signer(self.keys_dir / _KEY_FILES[role], None)
            if signer.public_key.keyid not in self._root().roles[role].keyids:
                raise TrustError(f"{self.keys_dir / _KEY_FILES[role]} is not the {role} key that root.json trusts: "
                                 "restore the keys directory that belongs to this repository")
            self._signers[role] = [signer]
        return self._signers[role]

    def _sign_snapshot_and_timestamp(self) -> None:
        with self.edit_snapshot() as snapshot:
            snapshot.meta["targets.json"] = self.targets_infos["targets.json"]
        with self.edit_timestamp() as timestamp:
            timestamp.snapshot_meta = self.snapshot_info

    def _versions(self) -> Versions:
        return Versions(*(self._metadata[role].signed.version for role in ALL_ROLES))

    # -- public operations ---------------------------------------------------------------------------------------

    def publish(self, manifests: Mapping[str, bytes], media: Mapping[str, tuple[int, str]], *,
                now: datetime) -> Versions:
        """Sign a new targets version holding exactly these manifests and media, then snapshot and timestamp."""
        infos: dict[str, TargetFile] = {}
        for path, data in manifests.items():
            infos[_check_target_path(path)] = TargetFile.from_data(path, data, ["sha256"])
        for path, (length, sha256) in media.items():
            if path in infos:
                raise TrustError(f"target {path} is both a manifest and a media file: give them distinct paths")
            if not isinstance(length, int) or length < 0 or not _SHA256_HEX.match(sha256 or ""):
                raise TrustError(f"media target {path}: length {length!r} / sha256 {sha256!r} is not a byte count "
                                 "and a 64-digit lowercase hex sha256: fix the rendition record")
            infos[_check_target_path(path)] = TargetFile(length, {"sha256": sha256}, path)
        with self._session(now):
            # Manifest bytes first, under the consistent-snapshot name ngclient asks for; metadata after them.
            for path, data in manifests.items():
                _write_atomic(self.targets_dir / _consistent_target_name(infos[path]), data)
            with self.edit_targets() as targets:
                # Agent releases and assignments are not programme content: a publish keeps them.
                kept = {p: t for p, t in targets.targets.items() if p.startswith(AGENT_PREFIX)}
                targets.targets = {**kept, **infos}
            self._sign_snapshot_and_timestamp()
            return self._versions()

    def add_files(self, files: Mapping[str, bytes], *, now: datetime, remove: tuple[str, ...] = ()) -> Versions:
        """Sign a new targets version that keeps every current target but REMOVE and adds (or replaces) FILES."""
        infos = {_check_target_path(path): TargetFile.from_data(path, data, ["sha256"]) for path, data in files.items()}
        with self._session(now):
            for path, data in files.items():
                _write_atomic(self.targets_dir / _consistent_target_name(infos[path]), data)
            with self.edit_targets() as targets:
                kept = {p: t for p, t in targets.targets.items() if p not in remove}
                targets.targets = {**kept, **infos}
            self._sign_snapshot_and_timestamp()
            return self._versions()

    def resign_expiring(self, *, now: datetime, within: timedelta) -> list[str]:
        """Re-sign every online role expiring within ``within`` (and the roles above it); return the roles signed."""
        with self._session(now):
            now = self._require_now()
            expiring = [r for r in ONLINE_ROLES if self._metadata[r].signed.expires - now <= within]
            if not expiring:
                return []
            first = ONLINE_ROLES.index(expiring[0])
            self._resign_from(ONLINE_ROLES[first])
            return list(ONLINE_ROLES[first:])

    def _resign_from(self, role: str) -> None:
        if role == Targets.type:
            with self.edit_targets():
                pass
        if role in (Targets.type, Snapshot.type):
            self._sign_snapshot_and_timestamp()
        else:
            with self.edit_timestamp():
                pass

    def expiry_warnings(self, *, now: datetime, days: int = 30) -> list[str]:
        """Human-readable warnings for root metadata expiring within ``days`` and online roles not being re-signed."""
        with self._session(now):
            now = self._require_now()
            warnings = []
            root_expires = self._root().expires
            if root_expires <= now:
                warnings.append(f"root metadata expired on {root_expires:%Y-%m-%d}: devices refuse every update; "
                                "run `lessoncast keys rotate-root` with the root key now")
            elif root_expires - now <= timedelta(days=days):
                warnings.append(f"root metadata expires on {root_expires:%Y-%m-%d} ({_days_left(root_expires, now)}):"
                                " run `lessoncast keys rotate-root` with the root key")
            for role in ONLINE_ROLES:
                expires = self._metadata[role].signed.expires
                # Online roles are re-signed by the worker long before they expire; a quarter of the lifetime
                # left means re-signing has stopped.
                if expires <= now:
                    warnings.append(f"{role} metadata expired on {expires:%Y-%m-%d %H:%M} UTC: devices refuse "
                                    "updates; start the lessoncast worker so it re-signs the online roles")
                elif expires - now <= self.expiries.lifetime(role) / 4:
                    warnings.append(f"{role} metadata expires on {expires:%Y-%m-%d %H:%M} UTC "
                                    f"({_days_left(expires, now)}): check that the lessoncast worker runs; "
                                    "it re-signs the online roles")
            return warnings

    def _initialise(self, signers: Mapping[str, CryptoSigner], *, now: datetime, root_days: int) -> None:
        with self._session(now, fresh=True):
            self._signers = {role: [signer] for role, signer in signers.items()}
            self._root_days = root_days
            with self.edit_root() as root:
                root.consistent_snapshot = True
                for role, signer in signers.items():
                    root.add_key(signer.public_key, role)
            with self.edit_targets():
                pass
            self._sign_snapshot_and_timestamp()

    def rotate_root(self, passphrase: str, *, now: datetime, new_passphrase: str | None = None,
                    rotate_online: bool = True, root_days: int = 365) -> int:
        """Sign root N+1 with the old and a new root key (new online keys too); return the new root version."""
        new_passphrase = passphrase if new_passphrase is None else new_passphrase
        _validate_passphrase(new_passphrase)
        with self._session(now):
            old_root = _load_signer(self.keys_dir / _KEY_FILES[Root.type], passphrase)
            if old_root.public_key.keyid not in self._root().roles[Root.type].keyids:
                raise TrustError(f"{self.keys_dir / 'root.pem'} is not the root key that root.json trusts: "
                                 "restore the keys directory that belongs to this repository")
            for role in ONLINE_ROLES:
                self._signers_for(role)  # the online keys must be sound before we change anything
            roles = (Root.type, *ONLINE_ROLES) if rotate_online else (Root.type,)
            new_keys = {role: Ed25519PrivateKey.generate() for role in roles}
            new = {role: CryptoSigner(key) for role, key in new_keys.items()}
            # New keys go to *.pem.new plus a plan naming them, before root.json names them: a crash at any point
            # either leaves the old keys valid or lets the next session finish the swap (_finish_interrupted_rotation).
            for role, key in new_keys.items():
                _write_atomic(self.keys_dir / f"{_KEY_FILES[role]}.new",
                              _key_bytes(key, new_passphrase if role == Root.type else None), mode=0o600)
            plan = {role: signer.public_key.keyid for role, signer in new.items()}
            _write_atomic(self.keys_dir / _ROTATION_PLAN, json.dumps(plan).encode(), mode=0o600)
            self._signers[Root.type] = [old_root, new[Root.type]]
            self._root_days = root_days
            with self.edit_root() as root:
                for role, signer in new.items():
                    for keyid in list(root.roles[role].keyids):
                        root.revoke_key(keyid, role)
                    root.add_key(signer.public_key, role)
            self._finish_interrupted_rotation()
            return self._root().version

    def _finish_interrupted_rotation(self) -> None:
        """Complete (or discard) a key swap recorded in the rotation plan, then re-sign the online roles."""
        plan_path = self.keys_dir / _ROTATION_PLAN
        if self._now is None or not plan_path.exists():
            return
        plan = json.loads(plan_path.read_text(encoding="utf-8"))
        root = self._root()
        reached = all(keyid in root.roles[role].keyids for role, keyid in plan.items())
        for role in plan:
            pending = self.keys_dir / f"{_KEY_FILES[role]}.new"
            if reached and pending.exists():
                os.replace(pending, self.keys_dir / _KEY_FILES[role])
            elif not reached:
                pending.unlink(missing_ok=True)  # root.json never named them: the old keys are still the valid ones
        plan_path.unlink()
        if reached:
            for role in ONLINE_ROLES:
                self._signers.pop(role, None)
            self._resign_from(Targets.type)

    def signed_versions_for_pack(self, *, now: datetime, expires: datetime) -> dict[str, bytes]:
        """Sign targets, snapshot and timestamp valid until ``expires``; return every metadata file a pack needs."""
        expires = as_utc(expires)
        with self._session(now):
            now = self._require_now()
            if expires <= now:
                raise TrustError(f"pack expiry {expires:%Y-%m-%d} is not in the future: check the programme's dates")
            root_expires = self._root().expires
            if root_expires < expires:
                raise TrustError(f"root metadata expires on {root_expires:%Y-%m-%d}, before the pack must stay "
                                 f"valid ({expires:%Y-%m-%d}): run `lessoncast keys rotate-root` first")
            self._expires_override = expires
            self._resign_from(Targets.type)
            files = {f"{v}.root.json": (self.metadata_dir / f"{v}.root.json").read_bytes()
                     for v in range(1, self._root().version + 1)}
            files["root.json"] = self._raw[Root.type]
            for role in ONLINE_ROLES:
                files[f"{role}.json"] = self._raw[role]
            return files

    def root_bytes(self) -> bytes:
        """The latest root.json, as devices are enrolled with it."""
        with self._session(None):
            return self._raw[Root.type]

    def current_versions(self) -> Versions:
        """The version of each role that clients currently see."""
        with self._session(None):
            return self._versions()

    def target_paths(self, prefix: str) -> list[str]:
        """The paths of the current targets that start with PREFIX."""
        with self._session(None):
            return sorted(p for p in self._metadata[Targets.type].signed.targets if p.startswith(prefix))

    def same_target(self, path: str, data: bytes) -> bool:
        """Whether the current targets already list PATH with exactly these bytes' length and sha256."""
        info = self.target_info(path)
        return info is not None and info == TargetFile.from_data(path, data, ["sha256"])

    def target_info(self, path: str) -> TargetFile | None:
        """The signed length and hashes of target ``path``, or None when the current targets do not list it."""
        with self._session(None):
            return self._metadata[Targets.type].signed.targets.get(path)


def _consistent_target_name(info: TargetFile) -> str:
    """The path ngclient downloads a target from when consistent snapshots are on: ``dir/{sha256}.{basename}``."""
    dirname, sep, basename = info.path.rpartition("/")
    return f"{dirname}{sep}{info.hashes['sha256']}.{basename}"
