"""Full disks, on a small tmpfs that gives real ENOSPC.

- A device's disk fills up during a sync: the download stops at once with a storage problem (not a network one
  retried for minutes), the partial copy is removed so the outbox keeps room, the old programme keeps playing, the
  check-ins made meanwhile all reach the server once, and when room is made the new programme arrives intact.
- The server's disk fills up during transcoding: the render job fails naming the full disk, no truncated rendition
  is stored, and once there is room again the retried job stores every rendition whole.
"""

from __future__ import annotations

import hashlib
import os

from sqlalchemy import select

from device_agent.sync import RESERVE_BYTES
from server.org.cards import digest
from tests.e2e.agent_harness import add_and_enrol, poll, publish_lessons, start_agent, start_ingest
from tests.e2e.faults.accounting import Account, rows_checksum, scaled
from tests.e2e.faults.conftest import fill

CHECKINS = scaled(20, 200)


def _media(store) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in store.media_dir.iterdir()}


def _checkins(services, device: str) -> list[str]:
    from server.events.models import DeviceEvent

    with services.db.session() as session:
        bodies = session.scalars(select(DeviceEvent.body).where(DeviceEvent.device_uid == device)).all()
    return [b["credential"] for b in bodies if b.get("type") == "checkin"]


def _rendition_size(services, lesson_id: int) -> int:
    from server.lessons.models import Rendition

    with services.db.session() as session:
        return max(session.scalars(select(Rendition.size_bytes).where(Rendition.lesson_id == lesson_id)).all())


def test_device_disk_full_during_sync(broker, org, ready_lesson, live_server, small_fs, fault_account):
    services = org
    short, long = ready_lesson("短课", 2.0), ready_lesson("长课", 40.0)
    disk = small_fs("72m")  # the agent keeps 64 MB free for its outbox, logs and the OS
    store = add_and_enrol(services, live_server, disk / "terminal", kind="terminal")
    ingest = start_ingest(services)
    publish_lessons(services, [short])
    running = start_agent(store)
    try:
        poll(lambda: running.agent.manifest and running.agent.link.connected.is_set(), 30, "the first programme")
        v1 = running.agent.manifest.version
        before = _media(store)
        need = _rendition_size(services, long)
        fill(disk, leave=RESERVE_BYTES + need // 3)  # something else filled the card: a third of the new file fits

        publish_lessons(services, [short, long])
        running.agent.request_sync(force=True)
        for n in range(CHECKINS // 2):
            running.hw.checkin.present("card", f"full-{n:03d}")
        poll(lambda: running.agent.sync_state == "error" and running.agent.sync_reason, 20,
             "the sync to stop on the full disk")
        reason = running.agent.sync_reason
        assert "space" in reason and not reason.startswith("network"), reason
        assert running.agent.manifest.version == v1, "the old programme keeps playing"
        left = [p.name for p in store.partial_dir.rglob("*") if p.is_file() and p.suffix != ".json"]
        assert not left, f"the partial copy was removed, giving the room back: {left}"
        for n in range(CHECKINS // 2, CHECKINS):
            running.hw.checkin.present("card", f"full-{n:03d}")
        poll(lambda: len(_checkins(services, running.agent.device)) >= CHECKINS, 30, "every check-in stored")

        (disk / "filler").unlink()
        running.agent.request_sync(force=True)
        poll(lambda: running.agent.manifest.version > v1, 60, "the new programme once there is room")
        after = _media(store)
        manifest = running.agent.manifest
    finally:
        running.halt()
        ingest.stop()
    from playlists.manifest import media_of

    wanted = {item.sha256 for item in media_of(manifest).values()}
    held = [hashlib.sha256(data).hexdigest() for data in after.values()]
    fault_account(Account.of(
        "device disk full during sync",
        [("file", s) for s in wanted]
        + [("checkin", digest(services.card_key, f"full-{n:03d}")) for n in range(CHECKINS)],
        [("file", s) for s in held] + [("checkin", c) for c in _checkins(services, running.agent.device)],
        intact_before=rows_checksum(before.items()), intact_after=rows_checksum((k, after.get(k)) for k in before),
        figures={"sync_reason": repr(reason[:80])}))


def _stored_renditions(services, lesson_id: int) -> list:
    from server.lessons.models import Rendition

    with services.db.session() as session:
        return session.execute(select(Rendition.profile, Rendition.state, Rendition.sha256, Rendition.size_bytes,
                                      Rendition.duration_s, Rendition.error)
                               .where(Rendition.lesson_id == lesson_id)).all()


def _store_files(services) -> dict[str, bytes]:
    root = services.media.root
    return {p.name: p.read_bytes() for p in root.glob("??/*")} if root.exists() else {}


def test_server_disk_full_during_transcoding(services, drain, small_fs, tmp_path, fault_account):
    import subprocess

    from server.lessons import service as lessons
    from tests.conftest import stage_file
    from tests.generated_media import speech_like

    first = ready_one(services, drain, tmp_path, "第一课", 3.0)  # stored before the fault: must stay intact
    before = _store_files(services)
    # The jobs' scratch directory fills up: a tmpfs mounted over it, with room for a fraction of a rendition.
    seconds = scaled(30.0, 240.0)
    scratch = services.work_dir
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(scratch)], check=False)
    mounted = os.path.ismount(scratch)
    if not mounted:
        import pytest

        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        audio = speech_like(tmp_path / "长课.wav", seconds=seconds)
        lesson, _ = lessons.ingest(services, stage_file(services, audio), audio.name,
                                   lessons.LessonMeta(title="长课"), "test")
        drain()
        failed = _stored_renditions(services, lesson.id)
        assert failed and all(r.state == "failed" for r in failed), failed
        assert not [p for p in services.media.root.glob("??/*") if p.name not in before], \
            "nothing of the failed renditions reached the media store"
    finally:
        subprocess.run(["umount", "-l", str(scratch)], check=False)
    lessons.retry(services, lesson.id)  # room again (the operator freed the disk): retry
    drain()
    ready = _stored_renditions(services, lesson.id)
    after = _store_files(services)
    wanted = {r.sha256 for r in ready if r.state == "ready"} | {r.sha256 for r in _stored_renditions(services, first)}
    held = []
    for name, data in after.items():
        if name.endswith(".jpg"):
            continue
        held.append(hashlib.sha256(data).hexdigest())
    durations = [r.duration_s for r in ready]
    fault_account(Account.of(
        "server disk full during transcoding", wanted, held,
        intact_before=rows_checksum(before.items()), intact_after=rows_checksum((k, after.get(k)) for k in before),
        figures={"failed_renditions_during_fault": len(failed), "ready_after_retry": len(ready)}))
    assert all(r.state == "ready" for r in ready) and all(abs(d - seconds) < 1.0 for d in durations), ready


def ready_one(services, drain, tmp_path, title: str, seconds: float) -> int:
    from server.lessons import service as lessons
    from tests.conftest import stage_file
    from tests.generated_media import speech_like

    audio = speech_like(tmp_path / f"{title}.wav", seconds=seconds)
    lesson, _ = lessons.ingest(services, stage_file(services, audio), audio.name, lessons.LessonMeta(title=title),
                               "test")
    drain()
    return lesson.id
