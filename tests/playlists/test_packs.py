"""Sideload packs: export, then import through the same TUF verification as a network sync."""

from __future__ import annotations

import io
import json
import os
import tarfile
from datetime import timedelta

import pytest

from playlists.packs import MAX_NAME_CHARS, PACK_ROOT, verify_pack, write_pack
from playlists.trust import TrustError

from .conftest import CHANNEL_A, make_county

CHANNEL = "ch-0123456789abcdef"
FAT32_FORBIDDEN = set(':*?"<>|\\')


@pytest.fixture
def exported(county, tmp_path):
    """Everything write_pack needs for channel A, with metadata valid for a 60-day programme."""
    media_dir = tmp_path / "store"
    media_dir.mkdir()
    media = []
    for target, data in county.media.items():
        path = media_dir / target.split("/")[-1]
        path.write_bytes(data)
        media.append((target, path))
    metadata = county.repo.signed_versions_for_pack(now=county.now, expires=county.now + timedelta(days=60))
    return dict(channel=CHANNEL, metadata=metadata, manifest_target=CHANNEL_A,
                manifest_bytes=county.manifests[CHANNEL_A], media=media)


def pack_files(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("as_tar", [False, True], ids=["directory", "tar"])
def test_export_then_import_round_trips(county, exported, tmp_path, as_tar):
    out = write_pack(tmp_path / ("pack.tar" if as_tar else "usb"), as_tar=as_tar, **exported)
    assert out.is_file() == as_tar
    pack = verify_pack(out if as_tar else tmp_path / "usb", county.root_v1(), work_dir=tmp_path / "work")
    assert pack.channel == CHANNEL
    assert pack.manifest_bytes == county.manifests[CHANNEL_A]
    assert sorted(pack.media) == sorted(county.media)
    for target, path in pack.media.items():
        assert path.read_bytes() == county.media[target]


def test_the_tar_is_reproducible_and_owned_by_nobody(exported, tmp_path):
    first = write_pack(tmp_path / "a.tar", as_tar=True, **exported).read_bytes()
    assert write_pack(tmp_path / "b.tar", as_tar=True, **exported).read_bytes() == first
    with tarfile.open(tmp_path / "a.tar") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and not m.uname for m in members)


def test_pack_names_are_fat32_safe(exported, tmp_path):
    root = write_pack(tmp_path / "usb", **exported)
    assert root == tmp_path / "usb" / PACK_ROOT
    for path in root.rglob("*"):
        name = path.name
        assert name.isascii() and name == name.lower() and len(name) <= MAX_NAME_CHARS, name
        assert not FAT32_FORBIDDEN & set(name), name
    relative = {str(p.relative_to(root)) for p in pack_files(root)}
    assert {"pack.json", "targets/manifest.json", "metadata/root.json", "metadata/1.root.json",
            "metadata/timestamp.json", "metadata/snapshot.json", "metadata/targets.json"} <= relative
    assert len([r for r in relative if r.startswith("media/")]) == 2


def test_names_that_are_not_fat32_safe_are_refused(exported, tmp_path):
    with pytest.raises(TrustError, match="not FAT32-safe"):
        write_pack(tmp_path / "usb", **{**exported, "metadata": {**exported["metadata"], "Root:2.json": b"{}"}})


def test_a_file_over_4_gib_is_refused(exported, tmp_path):
    huge = tmp_path / "huge.mp3"
    with open(huge, "wb") as handle:
        handle.truncate(2**32)  # sparse: costs no disk
    with pytest.raises(TrustError, match="over FAT32"):
        write_pack(tmp_path / "usb", **{**exported, "media": [("media/" + "0" * 64 + ".mp3", huge)]})


def test_one_flipped_byte_in_a_media_file_fails_naming_the_file(county, exported, tmp_path):
    root = write_pack(tmp_path / "usb", **exported)
    victim = sorted((root / "media").iterdir())[0]
    data = bytearray(victim.read_bytes())
    data[200] ^= 0x01
    victim.write_bytes(bytes(data))
    with pytest.raises(TrustError, match=victim.name):
        verify_pack(tmp_path / "usb", county.root_v1(), work_dir=tmp_path / "work")


def test_a_flipped_byte_in_the_manifest_fails(county, exported, tmp_path):
    root = write_pack(tmp_path / "usb", **exported)
    manifest = root / "targets" / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b"version", b"versioN"))
    with pytest.raises(TrustError, match="manifest.json does not match the signed length and hash"):
        verify_pack(root, county.root_v1(), work_dir=tmp_path / "work")


def test_a_media_file_missing_from_the_pack_fails(county, exported, tmp_path):
    root = write_pack(tmp_path / "usb", **exported)
    sorted((root / "media").iterdir())[0].unlink()
    with pytest.raises(TrustError, match="pack is missing media/"):
        verify_pack(root, county.root_v1(), work_dir=tmp_path / "work")


def test_tampered_pack_metadata_fails(county, exported, tmp_path):
    root = write_pack(tmp_path / "usb", **exported)
    timestamp = root / "metadata" / "timestamp.json"
    forged = json.loads(timestamp.read_bytes())
    forged["signed"]["expires"] = "2099-01-01T00:00:00Z"  # a pack that never expires, without the county's key
    timestamp.write_bytes(json.dumps(forged).encode())
    with pytest.raises(TrustError, match="UnsignedMetadataError"):
        verify_pack(root, county.root_v1(), work_dir=tmp_path / "work")


@pytest.mark.parametrize("member", ["../evil", "lessoncast-pack/../../evil", "/etc/evil", "symlink"])
def test_a_hostile_tar_is_refused(county, exported, tmp_path, member):
    tar_path = write_pack(tmp_path / "pack.tar", as_tar=True, **exported)
    with tarfile.open(tar_path, "a") as tar:
        if member == "symlink":
            info = tarfile.TarInfo("lessoncast-pack/media/link.mp3")
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info = tarfile.TarInfo(member)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(TrustError, match="escapes the pack directory|link or device"):
        verify_pack(tar_path, county.root_v1(), work_dir=tmp_path / "work")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "work" / "evil").exists()


def test_a_pack_signed_by_another_county_is_refused(exported, tmp_path, now):
    other = make_county(tmp_path / "other-county", now)
    root = write_pack(tmp_path / "usb", **exported)
    with pytest.raises(TrustError, match="UnsignedMetadataError"):
        verify_pack(root, other.root_v1(), work_dir=tmp_path / "work")


def test_an_expired_pack_is_refused(tmp_path, now):
    county = make_county(tmp_path / "county", now - timedelta(days=30))
    metadata = county.repo.signed_versions_for_pack(now=county.now, expires=now - timedelta(days=1))
    root = write_pack(tmp_path / "usb", channel=CHANNEL, metadata=metadata, manifest_target=CHANNEL_A,
                      manifest_bytes=county.manifests[CHANNEL_A], media=[])
    with pytest.raises(TrustError, match="ExpiredMetadataError"):
        verify_pack(root, county.root_v1(), work_dir=tmp_path / "work")


def test_an_interrupted_copy_without_the_index_is_refused(county, exported, tmp_path):
    root = write_pack(tmp_path / "usb", **exported)
    os.remove(root / "pack.json")
    with pytest.raises(TrustError, match="export it again"):
        verify_pack(tmp_path / "usb", county.root_v1(), work_dir=tmp_path / "work")


def test_a_pack_missing_a_media_file_of_its_manifest_is_refused(county, tmp_path):
    from playlists.packs import verify_pack, write_pack
    from playlists.trust import TrustError

    metadata = county.repo.signed_versions_for_pack(now=county.now, expires=county.now + timedelta(days=90))
    media = sorted(county.media.items())
    files = []
    for target, data in media[:1]:  # channel A's manifest lists two files; the pack holds one
        path = tmp_path / target.replace("/", "_")
        path.write_bytes(data)
        files.append((target, path))
    pack = write_pack(tmp_path / "usb", channel=CHANNEL, metadata=metadata, manifest_target=CHANNEL_A,
                      manifest_bytes=county.manifests[CHANNEL_A], media=files)
    with pytest.raises(TrustError, match="lacks 1 of the manifest's media files"):
        verify_pack(pack, county.root_v1(), work_dir=tmp_path / "work")


def _agent_files(county, tmp_path):
    """A signed wheel whose name is over FAT32's 64 characters, as a release target, and its file."""
    from playlists.agent_release import wheel_path

    name = "a_dependency_with_a_rather_long_distribution_name-12.0.0-py3-none-any.whl"
    data = b"PK\x03\x04 a wheel's bytes" * 40
    county.repo.add_files({wheel_path(name): data}, now=county.now)
    source = tmp_path / "wheel-source"
    source.write_bytes(data)
    return wheel_path(name), source, data


def test_agent_release_files_get_short_names_and_are_verified_like_media(county, exported, tmp_path):
    target, source, data = _agent_files(county, tmp_path)
    exported["metadata"] = county.repo.signed_versions_for_pack(now=county.now, expires=county.now + timedelta(days=60))
    root = write_pack(tmp_path / "usb", agent=[(target, source)], **exported)
    entry = next(f for f in json.loads((root / "pack.json").read_bytes())["files"] if f["target"] == target)
    assert len(target.rpartition("/")[2]) > MAX_NAME_CHARS
    assert entry["path"].startswith("agent/") and len(entry["path"].split("/")[1]) <= MAX_NAME_CHARS
    pack = verify_pack(tmp_path / "usb", county.root_v1(), work_dir=tmp_path / "work")
    assert pack.agent[target].read_bytes() == data
    # the update check reads it through the pack's TUF client, under the name ngclient asks for
    info = pack.tuf.get_targetinfo(target)
    pack.tuf.download_target(info, str(tmp_path / "fetched.whl"))
    assert (tmp_path / "fetched.whl").read_bytes() == data
    # the same bytes changed on the stick refuse the whole pack
    changed = bytearray(data)
    changed[5] ^= 0xFF
    (root / entry["path"]).write_bytes(bytes(changed))
    with pytest.raises(TrustError, match="does not match the signed length and hash"):
        verify_pack(tmp_path / "usb", county.root_v1(), work_dir=tmp_path / "work2")


def test_an_agent_entry_outside_the_agent_targets_is_refused(county, exported, tmp_path):
    with pytest.raises(TrustError, match="not an agent release target"):
        write_pack(tmp_path / "usb", agent=[("media/x.mp3", tmp_path / "nothing")], **exported)
    target, source, _data = _agent_files(county, tmp_path)
    exported["metadata"] = county.repo.signed_versions_for_pack(now=county.now, expires=county.now + timedelta(days=60))
    root = write_pack(tmp_path / "usb", agent=[(target, source)], **exported)
    index = json.loads((root / "pack.json").read_bytes())
    next(f for f in index["files"] if f["target"] == target)["target"] = "channels/x/manifest.json"
    (root / "pack.json").write_bytes(json.dumps(index).encode())
    with pytest.raises(TrustError, match="not an agent release target"):
        verify_pack(tmp_path / "usb", county.root_v1(), work_dir=tmp_path / "work")
