"""Sideload packs: a channel's signed TUF metadata, manifest and media on a USB stick or SD card, verified on import.

A pack is a directory (or a deterministic tar of it) named for FAT32 and cheap firmware:

    lessoncast-pack/pack.json              informative index (channel, target paths, hashes); never trusted
    lessoncast-pack/metadata/<role>.json   signed metadata (every root version, timestamp, snapshot, targets)
    lessoncast-pack/targets/manifest.json  the channel manifest
    lessoncast-pack/media/<hash>.<ext>     the media files
    lessoncast-pack/agent/<hash>.<ext>     agent release targets (assignments, release.json, wheels), when carried

Import runs the real ngclient Updater over the pack's files (through ``FileFetcher``), so a pack passes exactly the
checks a network sync passes, anchored on the device's own trusted root.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from playlists.trust import FileFetcher, TrustError, fetch_manifest, open_updater, verify_media

PACK_ROOT = "lessoncast-pack"
PACK_FORMAT = 1
# FAT32 stores files up to 4 GiB - 1 byte.
MAX_FILE_BYTES = 2**32 - 1
MAX_NAME_CHARS = 64
# Media are named by the first 32 hex digits (128 bits) of their sha256: the full 64 digits plus an extension would
# break the 64-character name limit. The name only locates the file; the signed sha256 is what gets checked.
MEDIA_NAME_HEX = 32
_SAFE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_BASE_URL = "pack://lessoncast-pack/"
AGENT_PREFIX = "agent/"


@dataclass(frozen=True)
class VerifiedPack:
    """What a pack import may use: the channel, its verified manifest bytes and verified media by target path."""

    channel: str
    manifest_bytes: bytes
    media: dict[str, Path]
    acks: bytes | None = None  # signed acks for the channel's devices, when the pack carries them
    agent: dict[str, Path] = field(default_factory=dict)  # verified agent release targets, by target path
    # An ngclient Updater over the pack's files (valid while they exist): the agent's self-update reads its
    # assignment, release and wheels through it exactly as it does over the network.
    tuf: Any = None


def safe_name(name: str) -> str:
    """Return ``name`` if it is FAT32-safe (ASCII lowercase, digits, '._-', at most 64 chars), else raise."""
    if len(name) > MAX_NAME_CHARS or not _SAFE_NAME.match(name) or name.endswith("."):
        raise TrustError(f"pack file name {name!r} is not FAT32-safe (lowercase ASCII letters, digits and '._-', "
                         f"at most {MAX_NAME_CHARS} characters): rename the source")
    return name


def _file_sha256(path: Path) -> tuple[int, str]:
    digest, length = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            length += len(chunk)
    return length, digest.hexdigest()


def _check_size(what: str, size: int) -> None:
    if size > MAX_FILE_BYTES:
        raise TrustError(f"{what}: {size} bytes is over FAT32's {MAX_FILE_BYTES}-byte file limit: split the "
                         "lesson or use a smaller rendition")


def _media_name(target_path: str, sha256: str) -> str:
    suffix = PurePosixPath(target_path).suffix.lower()
    return safe_name(f"{sha256[:MEDIA_NAME_HEX]}{suffix}")


def _pack_entries(*, channel: str, metadata: Mapping[str, bytes], manifest_target: str, manifest_bytes: bytes,
                  media: Sequence[tuple[str, Path]],
                  acks: tuple[str, bytes] | None = None,
                  agent: Sequence[tuple[str, Path]] = ()) -> dict[str, bytes | Path]:
    """Every file of the pack, by its path relative to the pack directory, in a checked, FAT32-safe layout."""
    if not metadata or "timestamp.json" not in metadata or "root.json" not in metadata:
        raise TrustError("pack metadata lacks root.json or timestamp.json: build it with "
                         "Repository.signed_versions_for_pack")
    entries: dict[str, bytes | Path] = {}
    for name, data in metadata.items():
        if not name.endswith(".json"):
            raise TrustError(f"pack metadata file {name!r} is not a .json file: pass the names TUF uses")
        entries[f"{PACK_ROOT}/metadata/{safe_name(name)}"] = data
    _check_size("manifest", len(manifest_bytes))
    entries[f"{PACK_ROOT}/targets/manifest.json"] = manifest_bytes
    files = [{"path": "targets/manifest.json", "target": manifest_target, "length": len(manifest_bytes),
              "sha256": hashlib.sha256(manifest_bytes).hexdigest()}]
    if acks is not None:
        acks_target, acks_bytes = acks
        entries[f"{PACK_ROOT}/targets/acks.json"] = acks_bytes
        files.append({"path": "targets/acks.json", "target": acks_target, "length": len(acks_bytes),
                      "sha256": hashlib.sha256(acks_bytes).hexdigest()})
    for target, source in media:
        source = Path(source)
        _check_size(str(source), source.stat().st_size)
        length, sha256 = _file_sha256(source)
        relative = f"media/{_media_name(target, sha256)}"
        if f"{PACK_ROOT}/{relative}" in entries:
            raise TrustError(f"media {target} is listed twice in the pack: pass each media file once")
        entries[f"{PACK_ROOT}/{relative}"] = source
        files.append({"path": relative, "target": target, "length": length, "sha256": sha256})
    for target, source in agent:
        # Wheel names run past FAT32's 64 characters: each file gets a short name by its hash; the index maps it.
        if not target.startswith(AGENT_PREFIX):
            raise TrustError(f"{target} is not an agent release target ({AGENT_PREFIX}…)")
        source = Path(source)
        _check_size(str(source), source.stat().st_size)
        length, sha256 = _file_sha256(source)
        relative = f"agent/{_media_name(target, sha256)}"
        if f"{PACK_ROOT}/{relative}" not in entries:
            entries[f"{PACK_ROOT}/{relative}"] = source
            files.append({"path": relative, "target": target, "length": length, "sha256": sha256})
    index = {"format": PACK_FORMAT, "channel": channel, "manifest_target": manifest_target, "files": files,
             "metadata": sorted(metadata)}
    entries[f"{PACK_ROOT}/pack.json"] = json.dumps(index, indent=1, sort_keys=True).encode() + b"\n"
    return entries


def write_pack(out: Path, *, channel: str, metadata: Mapping[str, bytes], manifest_target: str,
               manifest_bytes: bytes, media: Sequence[tuple[str, Path]], as_tar: bool = False,
               acks: tuple[str, bytes] | None = None, agent: Sequence[tuple[str, Path]] = ()) -> Path:
    """Write a pack directory under ``out`` (or the tar file ``out``) and return the path written.

    ACKS, (target path, bytes), is a signed file of acks for the channel's devices: a radio that never connects
    learns from it which of its events the server has, and empties its outbox. AGENT, (target path, file) pairs,
    are agent release targets (assignment files, release descriptors, wheels) that offline devices install from.
    """
    out = Path(out)
    entries = _pack_entries(channel=channel, metadata=metadata, manifest_target=manifest_target,
                            manifest_bytes=manifest_bytes, media=media, acks=acks, agent=agent)
    if as_tar:
        if out.suffix != ".tar":
            raise TrustError(f"{out}: a tar pack must be named *.tar")
        _write_tar(out, entries)
        return out
    root = out / PACK_ROOT
    if root.exists():
        raise TrustError(f"{root} already exists: remove the old pack or choose another directory")
    # pack.json goes last: a copy interrupted by a yanked stick leaves a pack without an index, which import refuses.
    for name in sorted(entries, key=lambda n: n.endswith("/pack.json")):
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        source = entries[name]
        if isinstance(source, Path):
            shutil.copyfile(source, path)
        else:
            path.write_bytes(source)
    return root


def _write_tar(out: Path, entries: Mapping[str, bytes | Path]) -> None:
    """A byte-for-byte reproducible tar: sorted members, mtime 0, uid/gid 0, fixed modes, no user names."""
    directories = sorted({str(parent) for name in entries for parent in PurePosixPath(name).parents
                          if str(parent) != "."})
    tmp = out.with_name(f".{out.name}.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted([*directories, *entries]):
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if name in directories:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                continue
            source = entries[name]
            info.mode = 0o644
            if isinstance(source, Path):
                info.size = source.stat().st_size
                with open(source, "rb") as handle:
                    tar.addfile(info, handle)
            else:
                info.size = len(source)
                tar.addfile(info, io.BytesIO(source))
    os.replace(tmp, out)


def _extract_tar(tar_path: Path, dest: Path) -> None:
    """Extract only plain files and directories with relative names; refuse links, devices and path escapes."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    try:
        with tarfile.open(tar_path, "r:") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if member.name.startswith("/") or ".." in parts or not parts or "\\" in member.name:
                    raise TrustError(f"{tar_path}: member {member.name!r} escapes the pack directory: the pack is "
                                     "malformed or hostile; do not use it")
                if member.isdir():
                    dest.joinpath(*parts).mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isreg():
                    raise TrustError(f"{tar_path}: member {member.name!r} is a link or device, not a plain file: "
                                     "the pack is malformed or hostile; do not use it")
                _check_size(f"{tar_path}: {member.name}", member.size)
                target = dest.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as source, open(target, "wb") as sink:
                    shutil.copyfileobj(source, sink)
    except tarfile.TarError as error:
        raise TrustError(f"{tar_path} is not a readable tar ({error}): copy the pack again") from error


def _pack_root(pack: Path, work_dir: Path) -> Path:
    if pack.is_file():
        _extract_tar(pack, work_dir / "extracted")
        pack = work_dir / "extracted"
    root = pack if pack.name == PACK_ROOT else pack / PACK_ROOT
    if not (root / "pack.json").is_file():
        raise TrustError(f"{pack} holds no {PACK_ROOT}/pack.json: it is not a lessoncast pack, or its copy was "
                         "interrupted; export it again")
    return root


def _read_index(root: Path) -> dict:
    try:
        index = json.loads((root / "pack.json").read_text(encoding="utf-8"))
        if index["format"] != PACK_FORMAT:
            raise TrustError(f"{root}/pack.json has format {index['format']}, this agent reads {PACK_FORMAT}: "
                             "update the agent or export the pack with a matching server")
        for entry in index["files"]:
            entry["path"], entry["target"] = str(entry["path"]), str(entry["target"])
        str(index["channel"]), str(index["manifest_target"])
    except (ValueError, KeyError, TypeError) as error:
        raise TrustError(f"{root}/pack.json is not a valid pack index ({error}): export the pack again") from error
    return index


def _version_aliases(root: Path) -> Iterator[tuple[str, str]]:
    """ngclient asks for N.snapshot.json and N.targets.json; the pack keeps them unversioned.

    The version is read from the unverified file only to name it: ngclient verifies everything it is given.
    """
    for role in ("snapshot", "targets"):
        try:
            version = json.loads((root / "metadata" / f"{role}.json").read_bytes())["signed"]["version"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # ngclient then finds no file and reports the pack's metadata as missing
        yield f"metadata/{int(version)}.{role}.json", f"metadata/{role}.json"


def verify_pack(pack: Path, trusted_root: bytes, *, work_dir: Path, metadata_dir: Path | None = None,
                reference_time=None) -> VerifiedPack:
    """Verify a pack directory or tar against ``trusted_root`` with ngclient and return what it may be used for.

    A device passes its own persistent ``metadata_dir`` (so a pack older than what it already trusts is refused as a
    rollback) and its trusted ``reference_time`` (its clock may be wrong).
    """
    pack, work_dir = Path(pack), Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    root = _pack_root(pack, work_dir)
    index = _read_index(root)
    channel, manifest_target = index["channel"], index["manifest_target"]
    if channel not in manifest_target.split("/"):
        raise TrustError(f"pack says channel {channel!r} but its manifest is {manifest_target!r}: the pack mixes "
                         "channels; export it again")
    fetcher = FileFetcher(_BASE_URL, root, aliases=dict(_version_aliases(root)))
    updater = open_updater(metadata_dir or work_dir / "metadata", trusted_root, f"{_BASE_URL}metadata/",
                           f"{_BASE_URL}targets/", fetcher=fetcher, reference_time=reference_time)
    # ngclient downloads "dir/{sha256}.{basename}" under consistent snapshots; the pack stores it as manifest.json.
    # Checking the file first refreshes the metadata (so the signed hash is known) and names the file on failure.
    verify_media(updater, manifest_target, root / "targets" / "manifest.json")
    info = updater.get_targetinfo(manifest_target)  # already refreshed and found by verify_media
    dirname, sep, basename = manifest_target.rpartition("/")
    fetcher.add_alias(f"targets/{dirname}{sep}{info.hashes['sha256']}.{basename}", "targets/manifest.json")
    manifest_bytes = fetch_manifest(updater, manifest_target, work_dir / "targets")
    media: dict[str, Path] = {}
    acks: bytes | None = None
    agent: dict[str, Path] = {}
    for entry in index["files"]:
        if entry["path"] == "targets/manifest.json":
            continue
        if entry["path"] == "targets/acks.json":
            if entry["target"] != f"{manifest_target.rpartition('/')[0]}/acks.json":
                raise TrustError(f"pack.json names {entry['target']!r} as its acks; they must be the channel's own")
            data = (root / "targets" / "acks.json").read_bytes()
            verify_media(updater, entry["target"], data)  # the bytes used are the bytes checked
            acks = data
            continue
        parts = PurePosixPath(entry["path"]).parts
        if len(parts) == 2 and parts[0] == "agent":
            agent[entry["target"]] = _verify_agent_file(updater, fetcher, root, entry["target"], parts[1])
            continue
        if len(parts) != 2 or parts[0] != "media":
            raise TrustError(f"pack.json lists {entry['path']!r}, which is not a file in media/: export the pack "
                             "again")
        path = root / "media" / safe_name(parts[1])
        if not path.is_file():
            raise TrustError(f"pack is missing {entry['path']} ({entry['target']}): the copy is incomplete; "
                             "export the pack again")
        verify_media(updater, entry["target"], path)
        media[entry["target"]] = path
    from playlists.manifest import ManifestError, media_of, parse_manifest

    try:
        wanted = {item.path for item in media_of(parse_manifest(manifest_bytes)).values()}
    except ManifestError as exc:
        raise TrustError(f"the pack's manifest is signed but malformed: {exc}") from exc
    missing = sorted(wanted - set(media))
    if missing:
        raise TrustError(f"the pack lacks {len(missing)} of the manifest's media files (first: {missing[0]}); "
                         "export the pack again")
    return VerifiedPack(channel, manifest_bytes, media, acks, agent, updater)


def _verify_agent_file(updater, fetcher: FileFetcher, root: Path, target: str, name: str) -> Path:
    """Check one agent release file against its signed length and sha256, and serve it under the name ngclient
    asks for (``dir/{sha256}.{basename}``), so the self-update downloads it from the pack like from the server."""
    if not target.startswith(AGENT_PREFIX):
        raise TrustError(f"pack.json lists {target!r} under agent/, which is not an agent release target: export "
                         "the pack again")
    path = root / "agent" / safe_name(name)
    if not path.is_file():
        raise TrustError(f"pack is missing agent/{name} ({target}): the copy is incomplete; export the pack again")
    verify_media(updater, target, path)  # a tampered wheel refuses the pack, as a tampered lesson does
    info = updater.get_targetinfo(target)
    dirname, _, basename = target.rpartition("/")
    fetcher.add_alias(f"targets/{dirname}/{info.hashes['sha256']}.{basename}", f"agent/{name}")
    return path
