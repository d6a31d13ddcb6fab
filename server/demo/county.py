"""A demo county built through the same services staff use: townships, sites and members, radios (each held by a
member) and village terminals, a quarter of real lessons spoken in Mandarin by espeak-ng (tone sequences where it
is missing), imported through lesson intake and transcoded by the running worker, and published.

Everything is idempotent by code: running the builder again on the same instance adds nothing twice.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Callable
from zoneinfo import ZoneInfo

from sqlalchemy import select

from server.devices import registry as devices
from server.devices.models import Device
from server.errors import Conflict
from server.i18n import _l
from server.lessons import service as lessons
from server.lessons.models import Lesson
from server.lessons.upload_stream import HashingFile
from server.org import service as org
from server.programmes import publish, service as programmes
from server.programmes.models import Programme

ACTOR = "demo"
TOWNSHIPS = (("qs", "青山镇"), ("hw", "海湾镇"), ("ls", "柳树乡"))
VILLAGES = ("东村", "西村", "南村", "北村", "河口村", "渔港村", "新村", "红旗村", "前进村", "光明村")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀英华"
LESSON_TEXTS = (
    ("第一课 学习新时代思想", "同志们好。今天我们学习新时代中国特色社会主义思想。请大家认真听讲，做好笔记。"),
    ("第二课 乡村振兴", "乡村振兴是一项重大任务。我们要发展产业，保护环境，让村民过上更好的日子。"),
    ("第三课 基层党建", "基层党组织是党的工作的基础。每一位党员都要发挥先锋模范作用。"),
    ("第四课 安全生产", "出海作业要注意安全。穿好救生衣，关注天气预报，遇到大风不要出海。"),
    ("第五课 法治宣传", "我们要学法懂法守法用法，依法办事，维护自己的合法权益。"),
    ("第六课 为民服务", "全心全意为人民服务是我们的宗旨。多听群众意见，多办实事好事。"),
)


@dataclass(frozen=True)
class CountySize:
    """How big the demo county is."""

    townships: int = 3
    sites: int = 20
    members: int = 300
    radios: int = 200
    terminals: int = 20
    lessons: int = 6


@dataclass
class DemoCounty:
    """What the builder made: site codes, members by site, and every device's enrolment code not yet used."""

    sites: list[str] = field(default_factory=list)
    members: dict[str, list[str]] = field(default_factory=dict)
    codes: dict[str, str] = field(default_factory=dict)
    lessons: list[int] = field(default_factory=list)
    programme: str = ""
    speech: bool = True


def site_codes(size: CountySize) -> list[tuple[str, str, str, str]]:
    """(township code, township name, site code, site name) for SIZE, sites dealt round the townships."""
    towns = TOWNSHIPS[:max(1, min(size.townships, len(TOWNSHIPS)))]
    rows = []
    for n in range(size.sites):
        code, name = towns[n % len(towns)]
        k = n // len(towns)  # the township's k-th site
        village = VILLAGES[k % len(VILLAGES)] + (str(k // len(VILLAGES)) if k >= len(VILLAGES) else "")
        rows.append((code, name, f"{code}-{k + 1:02d}", f"{name}{village}"))
    return rows


def build_org(services, size: CountySize, county: DemoCounty) -> None:
    """Townships, sites and members (member numbers D0001..., spread over the sites)."""
    sites = site_codes(size)
    text = "township_code,township_name,site_code,site_name\n" + "".join(",".join(r) + "\n" for r in sites)
    org.import_sites(services, text.encode(), ACTOR)
    county.sites = [r[2] for r in sites]
    rows = []
    for n in range(size.members):
        site = county.sites[n % len(county.sites)]
        number = f"D{n + 1:04d}"
        name = SURNAMES[n % len(SURNAMES)] + GIVEN[(n // len(SURNAMES)) % len(GIVEN)]
        rows.append(f"{number},{name},{site}\n")
        county.members.setdefault(site, []).append(number)
    org.import_members(services, ("member_id,name,site_code\n" + "".join(rows)).encode(), ACTOR)


def build_devices(services, size: CountySize, county: DemoCounty) -> None:
    """Radios held by members of their site, and terminals, one per site first; codes of those not enrolled."""
    with services.db.session() as session:
        have = {name: uid for name, uid in session.execute(select(Device.name, Device.uid)
                                                           .where(Device.name.like("演示%")))}
    wanted = [("terminal", f"演示终端 {n + 1}", county.sites[n % len(county.sites)], None)
              for n in range(size.terminals)]
    for n in range(size.radios):
        site = county.sites[n % len(county.sites)]
        people = county.members.get(site) or [None]
        wanted.append(("radio", f"演示收音机 {n + 1}", site, people[(n // len(county.sites)) % len(people)]))
    since = (date.today() - timedelta(days=30)).isoformat()
    for kind, name, site, holder in wanted:
        if name in have:
            with services.db.session() as session:
                device = session.scalar(select(Device).where(Device.uid == have[name]))
                enrolled = device.enrolled_at is not None
            if not enrolled:
                county.codes[have[name]] = devices.reissue_code(services, have[name], ACTOR)
            continue
        with services.db.session() as session:
            new = devices.add(services, session, kind=kind, name=name, site_code=site, actor=ACTOR)
        changes = {"settings": {"download_window": None}}
        if holder:
            changes.update(member=holder, member_from=since)
        devices.update(services, new.uid, changes, ACTOR)
        county.codes[new.uid] = new.code


def speak(text: str, out: Path) -> bool:
    """Write TEXT as Mandarin speech to OUT (WAV) with espeak-ng; False (and a tone sequence) where it is missing."""
    espeak = shutil.which("espeak-ng")
    if espeak:
        done = subprocess.run([espeak, "-v", "cmn", "-s", "150", "-w", str(out), text], capture_output=True)
        if done.returncode == 0 and out.exists() and out.stat().st_size > 1000:
            return True
    chain = ";".join(f"sine=frequency={f}:duration=0.6[a{n}]" for n, f in enumerate((440, 523, 587, 659, 698, 784)))
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-filter_complex",
                    chain + ";" + "".join(f"[a{n}]" for n in range(6)) + "concat=n=6:v=0:a=1[out]",
                    "-map", "[out]", "-ar", "22050", str(out)], check=True)
    return False


def build_lessons(services, size: CountySize, county: DemoCounty, work: Path) -> None:
    """Speak, import and queue the transcoding of SIZE.lessons lessons (intake refuses nothing twice)."""
    work.mkdir(parents=True, exist_ok=True)
    for n in range(size.lessons):
        title, text = LESSON_TEXTS[n % len(LESSON_TEXTS)]
        wav = work / f"lesson-{n + 1}.wav"
        county.speech = speak(f"{title}。{text}", wav) and county.speech
        staged = HashingFile(services.upload_dir)
        staged.write(wav.read_bytes())
        staged.close_file()
        meta = lessons.parse_meta({"title": title, "speaker": "县委党校", "series": "演示", "language": "cmn"})
        lesson, _created = lessons.ingest(services, lessons.StagedFile(staged.path, staged.sha256, staged.size),
                                          wav.name, meta, ACTOR)
        county.lessons.append(lesson.id)


def wait_ready(services, lesson_ids: list[int], timeout: float = 600.0,
               on_wait: Callable[[int, int], None] = lambda _r, _t: None) -> None:
    """Wait until the worker made every lesson's renditions; Conflict naming a failed or late lesson."""
    deadline = time.monotonic() + timeout
    while True:
        with services.db.session() as session:
            states = dict(session.execute(select(Lesson.id, Lesson.state).where(Lesson.id.in_(lesson_ids))).all())
        bad = [lid for lid, state in states.items() if state in ("failed", "rejected")]
        if bad:
            raise Conflict("demo_lesson_failed", _l("lesson {lesson_id} could not be transcoded; see the worker's log.",
                                                      lesson_id=bad[0]))
        ready = sum(1 for state in states.values() if state == "ready")
        on_wait(ready, len(lesson_ids))
        if ready == len(lesson_ids):
            return
        if time.monotonic() > deadline:
            raise Conflict("demo_lessons_late", _l("only {ready} of {total} lessons were transcoded in {seconds:.0f} "
                                                   "s; is the worker running ('lessoncast run')?", ready=ready,
                                                   total=len(lesson_ids), seconds=timeout))
        time.sleep(1.0)


def quarter(today: date) -> tuple[str, date, date]:
    """The code, first and last day of the quarter holding TODAY."""
    first_month = 3 * ((today.month - 1) // 3) + 1
    start = date(today.year, first_month, 1)
    following = date(today.year + 1, 1, 1) if first_month == 10 else date(today.year, first_month + 3, 1)
    end = following - timedelta(days=1)
    return f"DEMO-{today.year}-Q{(first_month - 1) // 3 + 1}", start, end


def demo_slots(now: datetime) -> list[dict]:
    """The usual broadcast and class slots, plus one of each soon after NOW (Shanghai time), so that terminals on
    a fast clock play within the demo's first minute."""
    local = now.astimezone(ZoneInfo("Asia/Shanghai"))
    soon = [(local + timedelta(minutes=m)).strftime("%H:%M") for m in (15, 45)]
    slots = {"07:00": "broadcast", "12:30": "broadcast", "19:30": "class", soon[0]: "broadcast", soon[1]: "class"}
    return [{"time": t, "kind": k} for t, k in sorted(slots.items())]


def publish_quarter(services, county: DemoCounty) -> dict:
    """Create (or reuse) this quarter's demo programme of the lessons, with broadcast and class slots, and
    publish it unless it already is."""
    code, start, end = quarter(services.today())
    county.programme = code
    with services.db.session() as session:
        existing = session.scalar(select(Programme).where(Programme.code == code).order_by(Programme.version.desc()))
        state = existing.state if existing else None
        pid = existing.id if existing else None
    if state == "published":
        return {"programme": code, "already": True}
    if pid is None:
        pid = programmes.create(services, {
            "code": code, "title": f"演示 {start.year} 年第 {(start.month - 1) // 3 + 1} 季度",
            "valid_from": start.isoformat(), "valid_until": end.isoformat(),
            "items": [{"lesson": lid} for lid in county.lessons],
            "slots": demo_slots(services.clock())}, ACTOR)
    return publish.publish(services, pid, ACTOR)
