"""The county's TUF repository and the device's verified fetch: what devices accept, and the attacks they refuse."""

from __future__ import annotations

import stat
from datetime import datetime, timedelta

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, MetaFile

from playlists.trust import TrustError, fetch_manifest, verify_media
from playlists.trust_repository import Expiries, Repository, Versions, init_keys

from .conftest import CHANNEL_A, CHANNEL_B, PASSPHRASE, make_county, media_target


def served_target(county, target: str):
    """The file the server serves for ``target`` under its consistent-snapshot name."""
    info = county.repo.target_info(target)
    dirname, _, basename = target.rpartition("/")
    return county.repo_dir / "targets" / dirname / f"{info.hashes['sha256']}.{basename}"


def flip(data: bytes, index: int = 0) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1:]


def test_refresh_gets_the_manifest_and_accepts_the_right_media(county, tmp_path):
    updater = county.updater()
    assert fetch_manifest(updater, CHANNEL_A, tmp_path / "dl") == county.manifests[CHANNEL_A]
    assert fetch_manifest(updater, CHANNEL_B, tmp_path / "dl") == county.manifests[CHANNEL_B]
    for target, data in county.media.items():
        verify_media(updater, target, data)
        on_disk = tmp_path / "download.mp3"
        on_disk.write_bytes(data)
        verify_media(updater, target, on_disk)


def test_a_second_sync_reuses_the_verified_cached_manifest(county, tmp_path):
    fetch_manifest(county.updater(), CHANNEL_A, tmp_path / "dl")
    served_target(county, CHANNEL_A).unlink()  # the server could not serve it now
    assert fetch_manifest(county.updater(), CHANNEL_A, tmp_path / "dl") == county.manifests[CHANNEL_A]


def test_a_tampered_manifest_byte_is_rejected(county, tmp_path):
    path = served_target(county, CHANNEL_A)
    path.write_bytes(flip(path.read_bytes(), 5))
    with pytest.raises(TrustError, match="LengthOrHashMismatchError") as caught:
        fetch_manifest(county.updater(), CHANNEL_A, tmp_path / "dl")
    assert caught.value.__cause__ is not None
    assert not any((tmp_path / "dl").iterdir()), "nothing unverified may land in the download directory"


@pytest.mark.parametrize("damage", [lambda d: flip(d, 100), lambda d: d[:-1], lambda d: d + b"\0"],
                         ids=["flipped-byte", "truncated", "extra-byte"])
def test_tampered_media_is_rejected(county, tmp_path, damage):
    updater = county.updater()
    target, data = next(iter(county.media.items()))
    with pytest.raises(TrustError, match=f"signed length and hash of {target}"):
        verify_media(updater, target, damage(data))
    path = tmp_path / "lesson.mp3"
    path.write_bytes(damage(data))
    with pytest.raises(TrustError, match="lesson.mp3"):
        verify_media(updater, target, path)


def test_media_the_county_never_signed_is_rejected(county):
    unsigned = b"a lesson nobody signed"
    with pytest.raises(TrustError, match="not in the county's signed targets"):
        verify_media(county.updater(), media_target(unsigned)[0], unsigned)


def test_a_replayed_older_timestamp_is_rejected(county, tmp_path):
    old_timestamp = county.served("timestamp.json").read_bytes()  # v2
    county.publish({**county.manifests, CHANNEL_A: b'{"channel": "ch-0123456789abcdef", "version": 2}'})
    assert county.repo.current_versions().timestamp == 3
    fetch_manifest(county.updater(), CHANNEL_A, tmp_path / "dl")  # the device has seen timestamp v3
    county.served("timestamp.json").write_bytes(old_timestamp)
    with pytest.raises(TrustError, match="BadVersionNumberError"):
        fetch_manifest(county.updater(), CHANNEL_A, tmp_path / "dl")


def test_an_older_snapshot_served_as_the_current_one_is_rejected(county, tmp_path):
    version = county.repo.current_versions().snapshot
    county.served(f"{version}.snapshot.json").write_bytes(county.served(f"{version - 1}.snapshot.json").read_bytes())
    with pytest.raises(TrustError, match="LengthOrHashMismatchError"):
        fetch_manifest(county.updater(), CHANNEL_A, tmp_path / "dl")


def test_a_validly_signed_timestamp_rolling_back_the_snapshot_is_rejected(county, tmp_path):
    """Even an attacker holding the timestamp key cannot send a device back to a snapshot older than it saw."""
    fetch_manifest(county.updater(), CHANNEL_A, tmp_path / "dl")  # has seen snapshot v2
    key = load_pem_private_key((county.keys_dir / "timestamp.pem").read_bytes(), None)
    forged = Metadata.from_bytes(county.served("timestamp.json").read_bytes())
    forged.signed.version += 1
    forged.signed.snapshot_meta = MetaFile.from_data(1, county.served("1.snapshot.json").read_bytes(), ["sha256"])
    forged.sign(CryptoSigner(key))
    county.served("timestamp.json").write_bytes(forged.to_bytes())
    with pytest.raises(TrustError, match="BadVersionNumberError"):
        fetch_manifest(county.updater(), CHANNEL_A, tmp_path / "dl")


def test_expired_metadata_is_rejected_until_the_worker_resigns(tmp_path, now):
    county = make_county(tmp_path, now - timedelta(days=2))  # timestamp lasted one day: a frozen repository
    with pytest.raises(TrustError, match="ExpiredMetadataError"):
        fetch_manifest(county.updater(), CHANNEL_A, tmp_path / "dl")
    assert county.repo.resign_expiring(now=now, within=timedelta(hours=6)) == ["timestamp"]
    assert fetch_manifest(county.updater("other-device"), CHANNEL_A, tmp_path / "dl") == county.manifests[CHANNEL_A]


def test_mix_and_match_channel_a_manifest_under_channel_b_is_rejected(county, tmp_path):
    served_target(county, CHANNEL_B).write_bytes(county.manifests[CHANNEL_A])
    # Channel A's manifest is longer than B's: the download stops at B's signed length, or fails its hash.
    with pytest.raises(TrustError, match="LengthOrHashMismatchError|DownloadLengthMismatchError"):
        fetch_manifest(county.updater(), CHANNEL_B, tmp_path / "dl")


def test_mix_and_match_an_older_manifest_in_place_of_the_current_is_rejected(county, tmp_path):
    old_file = served_target(county, CHANNEL_A)
    county.publish({**county.manifests, CHANNEL_A: b'{"channel": "ch-0123456789abcdef", "version": 2}'})
    served_target(county, CHANNEL_A).write_bytes(old_file.read_bytes())
    with pytest.raises(TrustError, match="LengthOrHashMismatchError|DownloadLengthMismatchError"):
        fetch_manifest(county.updater(), CHANNEL_A, tmp_path / "dl")


def test_publish_holds_exactly_the_current_targets(county, tmp_path):
    withdrawn = next(iter(county.media))
    county.publish({CHANNEL_A: county.manifests[CHANNEL_A]}, list(county.media.values())[1:])
    assert county.repo.target_info(CHANNEL_B) is None and county.repo.target_info(withdrawn) is None
    with pytest.raises(TrustError, match="not in the county's signed targets"):
        fetch_manifest(county.updater(), CHANNEL_B, tmp_path / "dl")


@pytest.mark.parametrize("path", ["../etc/passwd", "/abs/manifest.json", "channels//manifest.json", "a/./b"])
def test_publish_refuses_target_paths_that_escape(county, path):
    with pytest.raises(TrustError, match="not a plain relative path"):
        county.repo.publish({path: b"{}"}, {}, now=county.now)


def test_publish_refuses_bad_media_hashes(county):
    with pytest.raises(TrustError, match="64-digit lowercase hex"):
        county.repo.publish({}, {"media/x.mp3": (10, "ABC")}, now=county.now)


def test_resign_expiring_bumps_only_what_expires_and_devices_accept(county, tmp_path):
    fetch_manifest(county.updater(), CHANNEL_A, tmp_path / "dl")
    start = county.repo.current_versions()
    assert county.repo.resign_expiring(now=county.now, within=timedelta(hours=1)) == []
    assert county.repo.resign_expiring(now=county.now, within=timedelta(days=2)) == ["timestamp"]
    assert county.repo.current_versions() == Versions(1, start.targets, start.snapshot, start.timestamp + 1)
    assert county.repo.resign_expiring(now=county.now, within=timedelta(days=8)) == ["snapshot", "timestamp"]
    assert county.repo.resign_expiring(now=county.now, within=timedelta(days=100)) == ["targets", "snapshot",
                                                                                       "timestamp"]
    assert county.repo.current_versions() == Versions(1, start.targets + 1, start.snapshot + 2, start.timestamp + 3)
    assert fetch_manifest(county.updater(), CHANNEL_A, tmp_path / "dl") == county.manifests[CHANNEL_A]
    assert county.repo.resign_expiring(now=county.now + timedelta(hours=23), within=timedelta(hours=2)) == [
        "timestamp"]


def test_rotate_root_devices_enrolled_with_root_v1_follow_and_still_verify(county, tmp_path):
    fetch_manifest(county.updater(), CHANNEL_A, tmp_path / "dl")
    old_keys = {p.name: p.read_bytes() for p in county.keys_dir.glob("*.pem")}
    assert county.repo.rotate_root(PASSPHRASE, now=county.now, new_passphrase="a new passphrase") == 2
    assert all(old_keys[p.name] != p.read_bytes() for p in county.keys_dir.glob("*.pem")), "all four keys rotate"
    assert not list(county.keys_dir.glob("*.new")) and not (county.keys_dir / "rotation.json").exists()

    v1 = Metadata.from_bytes(county.served("1.root.json").read_bytes())
    v2 = Metadata.from_bytes(county.served("2.root.json").read_bytes())
    assert len(v2.signatures) == 2
    v1.signed.verify_delegate("root", v2.signed_bytes, v2.signatures)  # the old root key signed the new root
    v2.signed.verify_delegate("root", v2.signed_bytes, v2.signatures)  # and so did the new one

    # The device that synced under v1, and a never-synced device with the enrolment root, both follow to v2.
    for device in ("device", "new-device"):
        assert fetch_manifest(county.updater(device), CHANNEL_A, tmp_path / "dl") == county.manifests[CHANNEL_A]
    assert (tmp_path / "new-device" / "metadata" / "root_history" / "2.root.json").exists()

    county.publish({**county.manifests, CHANNEL_A: b'{"channel": "ch-0123456789abcdef", "version": 2}'})
    assert fetch_manifest(county.updater(), CHANNEL_A, tmp_path / "dl").endswith(b'"version": 2}')
    with pytest.raises(TrustError, match="passphrase is wrong"):
        county.repo.rotate_root(PASSPHRASE, now=county.now)
    assert county.repo.rotate_root("a new passphrase", now=county.now, rotate_online=False) == 3
    assert fetch_manifest(county.updater(), CHANNEL_A, tmp_path / "dl").endswith(b'"version": 2}')


def test_a_rotation_interrupted_after_root_json_is_finished_by_the_next_session(county, tmp_path, monkeypatch):
    def crash(self):  # power cut right after root.json named the new keys, before they were moved into place
        if (self.keys_dir / "rotation.json").exists():
            raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(Repository, "_finish_interrupted_rotation", crash)
    with pytest.raises(KeyboardInterrupt):
        county.repo.rotate_root(PASSPHRASE, now=county.now)
    monkeypatch.undo()
    assert (county.keys_dir / "rotation.json").exists() and county.served("2.root.json").exists()
    with pytest.raises(TrustError, match="UnsignedMetadataError"):
        fetch_manifest(county.updater(), CHANNEL_A, tmp_path / "dl")  # online roles still carry the old keys
    assert county.repo.resign_expiring(now=county.now, within=timedelta(0)) == []
    assert not (county.keys_dir / "rotation.json").exists()
    assert fetch_manifest(county.updater(), CHANNEL_A, tmp_path / "dl") == county.manifests[CHANNEL_A]
    assert county.repo.current_versions().root == 2


def test_a_crash_between_the_two_root_writes_keeps_the_newest_root(county, tmp_path):
    """Devices walk N.root.json: when 2.root.json exists but root.json is still v1, v2 is the truth."""
    v1 = county.served("root.json").read_bytes()
    county.repo.rotate_root(PASSPHRASE, now=county.now)
    county.served("root.json").write_bytes(v1)
    assert county.repo.current_versions().root == 2
    county.repo.resign_expiring(now=county.now, within=timedelta(days=2))
    assert county.served("root.json").read_bytes() == county.served("2.root.json").read_bytes()
    assert fetch_manifest(county.updater(), CHANNEL_A, tmp_path / "dl") == county.manifests[CHANNEL_A]


def test_wrong_passphrase_changes_nothing(county):
    before = county.repo.current_versions()
    with pytest.raises(TrustError, match="root key passphrase is wrong"):
        county.repo.rotate_root("not the passphrase", now=county.now)
    assert county.repo.current_versions() == before
    assert not list(county.keys_dir.glob("*.new"))


def test_expiry_warnings_30_days_before_root_expires(tmp_path, now):
    county = make_county(tmp_path, now, root_days=20)
    warnings = county.repo.expiry_warnings(now=now)
    expires = now + timedelta(days=20)
    assert warnings == [f"root metadata expires on {expires:%Y-%m-%d} (in 20 days): run `lessoncast keys "
                        "rotate-root` with the root key"]
    assert county.repo.expiry_warnings(now=now, days=10) == []


def test_expiry_warnings_when_online_roles_are_not_being_resigned(county):
    assert county.repo.expiry_warnings(now=county.now) == []
    later = county.repo.expiry_warnings(now=county.now + timedelta(hours=20))
    assert len(later) == 1 and later[0].startswith("timestamp metadata expires on") and "worker" in later[0]
    expired = county.repo.expiry_warnings(now=county.now + timedelta(days=8))
    assert [w.split()[0] for w in expired] == ["snapshot", "timestamp"] and all("expired" in w for w in expired)


def test_init_keys_refuses_to_overwrite_a_county(county):
    keys = {p.name: p.read_bytes() for p in county.keys_dir.iterdir()}
    with pytest.raises(TrustError, match="already exist"):
        init_keys(county.keys_dir, county.repo_dir, PASSPHRASE, now=county.now)
    with pytest.raises(TrustError, match="already exist"):
        init_keys(county.tmp / "other-keys", county.repo_dir, PASSPHRASE, now=county.now)
    assert keys == {p.name: p.read_bytes() for p in county.keys_dir.iterdir()}


def test_key_files_are_private_and_the_root_key_is_encrypted(county):
    names = sorted(p.name for p in county.keys_dir.iterdir())
    assert names == ["root.pem", "snapshot.pem", "targets.pem", "timestamp.pem"]
    for name in names:
        assert stat.S_IMODE((county.keys_dir / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(county.keys_dir.stat().st_mode) == 0o700
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in (county.keys_dir / "root.pem").read_bytes()
    assert b"BEGIN PRIVATE KEY" in (county.keys_dir / "timestamp.pem").read_bytes()


def test_init_keys_writes_a_consistent_snapshot_repository(tmp_path, now):
    init_keys(tmp_path / "k", tmp_path / "r", PASSPHRASE, now=now,
              expiries=Expiries(targets_days=30, snapshot_days=2, timestamp_days=0.5))
    names = sorted(p.name for p in (tmp_path / "r" / "metadata").iterdir())
    assert names == ["1.root.json", "1.snapshot.json", "1.targets.json", "root.json", "timestamp.json"]
    root = Metadata.from_bytes((tmp_path / "r" / "metadata" / "root.json").read_bytes())
    assert root.signed.consistent_snapshot and root.signed.expires == now + timedelta(days=365)
    timestamp = Metadata.from_bytes((tmp_path / "r" / "metadata" / "timestamp.json").read_bytes())
    assert timestamp.signed.expires == now + timedelta(hours=12)


def test_signed_versions_for_pack_cover_the_programme_and_stay_monotonic(county, tmp_path):
    fetch_manifest(county.updater(), CHANNEL_A, tmp_path / "dl")
    before = county.repo.current_versions()
    expires = county.now + timedelta(days=60)
    files = county.repo.signed_versions_for_pack(now=county.now, expires=expires)
    assert sorted(files) == ["1.root.json", "root.json", "snapshot.json", "targets.json", "timestamp.json"]
    for role in ("timestamp", "snapshot", "targets"):
        assert Metadata.from_bytes(files[f"{role}.json"]).signed.expires == expires
    assert county.repo.current_versions() == Versions(1, before.targets + 1, before.snapshot + 1,
                                                      before.timestamp + 1)
    assert files["timestamp.json"] == county.served("timestamp.json").read_bytes()
    assert fetch_manifest(county.updater(), CHANNEL_A, tmp_path / "dl") == county.manifests[CHANNEL_A]


def test_signed_versions_for_pack_refuse_to_outlive_root(county):
    with pytest.raises(TrustError, match="rotate-root"):
        county.repo.signed_versions_for_pack(now=county.now, expires=county.now + timedelta(days=400))


def test_times_without_a_zone_are_refused(county):
    with pytest.raises(TrustError, match="no time zone"):
        county.repo.resign_expiring(now=datetime(2026, 1, 1), within=timedelta(days=1))
