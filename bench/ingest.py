"""Benchmark: sustained event ingest through a real Mosquitto into the real database, against a bare insert.

Each run (three by default, --runs; the median, minimum and maximum are reported):

1. An instance on SQLite (the default) or on a new database on the PostgreSQL server --database names, with radios
   enrolled with their own broker credentials, each assigned to a member, and a published programme, so every play
   is folded into attendance as it is stored. lessoncast's generated Mosquitto and the product's number of
   ``lessoncast ingest`` processes (LESSONCAST_INGEST_PROCESSES, 2) are started.
2. The radios publish batches of 200 play events (the agent's batch size) as fast as the acks allow, each keeping
   up to --window batches unacked, for a warm-up and then --seconds measured seconds. The rate counts only events
   the server acknowledged (committed) inside the measured window.
3. After the acks catch up, the database is checked against what was sent: ``lost`` (sent, never stored) and
   ``duplicated`` (stored twice, or counted twice by the device counters) must both be 0.
4. The reference: the same rows, read back, inserted with ``executemany`` one transaction per 200 rows (as a store
   that acknowledges per batch must) into a table with the same columns and indexes: a new SQLite file in the same
   folder with the same pragmas, or a table LIKE device_events in the same PostgreSQL database (where COPY is
   measured too). One transaction for all rows is printed for comparison.

    .venv/bin/python bench/ingest.py --ingests 2 --devices 60
    .venv/bin/python bench/ingest.py --database postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/ingest.py --seconds 20 --runs 1 --py-spy /tmp/prof    # py-spy profiles of run 1
    .venv/bin/python bench/ingest.py --source simulate  # the fleet simulator's agents deliver their outboxes

Prints each run's JSON, a table, then one line of JSON: events_per_s, bare_rows_per_s, ratio and
ingest_cpu_ms_per_1000_events (the ingest processes' CPU time from their connection to the broker on, per 1,000
events stored: what an event costs, whatever else the machine runs), each as median, min and max; lost, duplicated,
and every run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import date, datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from device_agent.agent import AgentOptions  # noqa: E402
from playlists import topics  # noqa: E402
from server.devices import registry as devices  # noqa: E402
from server.devices import enrolment  # noqa: E402
from server.devices.models import Device, DeviceAssignment
from server.events.models import DeviceEvent, DeviceSequence  # noqa: E402
from server.lessons.models import Lesson, Rendition  # noqa: E402
from server.messaging.hang_up import hang_up  # noqa: E402
from server.org.models import Member, Site
from server.programmes.models import Programme, ProgrammeItem  # noqa: E402
from tests.conftest import free_port, make_services  # noqa: E402
from tests.e2e.fleet_sim import MosquittoProcess, lessoncast_env, start_ingest  # noqa: E402

BATCH = AgentOptions().batch_size  # 200, the agent's
SHA = "5" * 64
EVENT = ('{"type":"play","phase":"progress","play_id":"%s","programme":"2026-Q4","lesson":%d,"sha256":"' + SHA
         + '","start_position":%r,"end_position":%r,"listened_seconds":%r,"volume":70,"muted":false,'
         '"trigger":"key","started_at":"%s","device_time":"%s","time":"%s","clock_offset":0.0,"id":"%s",'
         '"seq":%d,"epoch":1}')


def setup(services, count: int, lesson_id_box: list) -> list[dict]:
    """COUNT radios enrolled (own broker credentials), each held by a member, and a published programme."""
    logging.getLogger("server.messaging.retained").disabled = True  # configs wait for the broker; that is expected here
    from server.instance import initialise

    initialise(services)
    from server.org import service as org_mod

    org_mod.import_sites(services, "township_code,township_name,site_code,site_name\nqs,青山镇,qs-01,东村\n"
                         .encode(), "bench")
    with services.db.session() as session:
        codes = [devices.add(services, session, kind="radio", name=f"bench {n}", site_code="qs-01",
                             actor="bench").code for n in range(count)]
    answers = [enrolment.enrol(services, code) for code in codes]
    now = datetime.now(timezone.utc)
    with services.db.session() as session:
        site = session.scalar(select(Site.id).where(Site.code == "qs-01"))
        for n, answer in enumerate(answers):
            member = Member(member_no=f"B{n:05d}", name=f"党员{n}", site_id=site, branch="", updated_at=now, flags=[])
            session.add(member)
            session.flush()
            device = session.scalar(select(Device).where(Device.uid == answer["device"]))
            session.add(DeviceAssignment(device_id=device.id, member_id=member.id, from_date=date(2026, 1, 1)))
        lesson = Lesson(title="基准课", language="cmn", state="ready", created_at=now, updated_at=now)
        session.add(lesson)
        session.flush()
        session.add(Rendition(lesson_id=lesson.id, profile="radio-opus", state="ready", extension="opus", sha256=SHA,
                              size_bytes=1, duration_s=3600.0, updated_at=now))
        programme = Programme(code="2026-Q4", version=1, title="基准", valid_from=date(2026, 1, 1),
                              valid_until=date(2027, 12, 31), slots=[], state="published", created_at=now,
                              published_at=now, published_by="bench")
        session.add(programme)
        session.flush()
        session.add(ProgrammeItem(programme_id=programme.id, position=0, lesson_id=lesson.id, mandatory=True,
                                  groups=[], variant_lesson_ids=[]))
        lesson_id_box.append(lesson.id)
    return answers


def uuid4_texts(count: int) -> list[str]:
    """COUNT random (version 4) UUIDs as text, from one read of the system's random source instead of one per id
    (``uuid.uuid4``). The radios run on the machine they measure, so what they spend making events is CPU the ingest
    processes do not get (a server's devices are elsewhere)."""
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = bytes((b & 0x0F) | 0x40 for b in raw[6::16])  # version 4
    raw[8::16] = bytes((b & 0x3F) | 0x80 for b in raw[8::16])  # the RFC 4122 variant
    h = raw.hex()
    return [f"{h[i:i + 8]}-{h[i + 8:i + 12]}-{h[i + 12:i + 16]}-{h[i + 16:i + 20]}-{h[i + 20:i + 32]}"
            for i in range(0, 32 * count, 32)]


class Radio:
    """One radio: its MQTT session, the next sequence to send, and the highest ack it saw."""

    def __init__(self, uid: str, password: str, port: int, lesson: int):
        self.uid, self.lesson = uid, lesson
        self.next_seq, self.acked = 1, 0
        self.ack_event = threading.Event()
        self.ids: list[str] = []
        self.position = 0.0
        self.play_id = str(uuid.uuid4())
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=uid, protocol=mqtt.MQTTv5)
        client.username_pw_set(uid, password)
        client.on_connect = lambda c, *_a: c.subscribe(topics.ack(uid), qos=1)
        client.on_message = self._on_ack
        self.client = client
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        client.connect("127.0.0.1", port, keepalive=30, clean_start=False, properties=props)
        client.loop_start()

    def _on_ack(self, _client, _userdata, msg) -> None:
        ack = json.loads(msg.payload)
        if ack.get("epoch") == 1 and ack["seq"] > self.acked:
            self.acked = ack["seq"]
            self.ack_event.set()

    def publish_batch(self) -> None:
        now = datetime.now(timezone.utc).isoformat()
        first = self.next_seq
        events = []
        ids = uuid4_texts(BATCH)
        self.ids += ids
        for seq, event_id in zip(range(first, first + BATCH), ids):
            start = self.position
            self.position = start + 30.0 if start < 3500 else 0.0
            if self.position == 0.0:
                self.play_id = str(uuid.uuid4())
            events.append(EVENT % (self.play_id, self.lesson, start, start + 30.0, 30.0, now, now, now, event_id,
                                   seq))
        self.next_seq = first + BATCH
        payload = ('{"device":"%s","epoch":1,"events":[%s]}' % (self.uid, ",".join(events))).encode()
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("device", self.uid), ("epoch", "1"), ("seq", f"{first}-{first + BATCH - 1}")]
        self.client.publish(topics.events(self.uid), payload, qos=1, properties=props)

    def close(self) -> None:
        hang_up(self.client)


def drive(radios: list[Radio], window: int, warmup: float, seconds: float) -> tuple[float, int]:
    """Publish while each radio has fewer than WINDOW batches unacked; return (events/s acked in the measured
    window, events sent)."""
    stop_at = time.monotonic() + warmup + seconds
    measured: dict[str, float] = {}

    def acked_total() -> int:
        return sum(r.acked for r in radios)

    def sampler() -> None:
        time.sleep(warmup)
        measured["a0"], measured["t0"] = acked_total(), time.monotonic()
        time.sleep(seconds)
        measured["a1"], measured["t1"] = acked_total(), time.monotonic()

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    while time.monotonic() < stop_at:
        busy = True
        for radio in radios:
            if (radio.next_seq - 1) - radio.acked < window * BATCH:
                radio.publish_batch()
                busy = False
        if busy:
            time.sleep(0.002)
    thread.join()
    rate = (measured["a1"] - measured["a0"]) / (measured["t1"] - measured["t0"])
    return rate, sum(r.next_seq - 1 for r in radios)


def bare_sqlite(rows: list[tuple], path: Path, per_transaction: int) -> float:
    """Rows per second of executemany into a table like device_events (same unique index), PER_TRANSACTION rows
    per commit, WAL and synchronous=NORMAL as lessoncast's SQLite."""
    if path.exists():
        path.unlink()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE device_events (id INTEGER PRIMARY KEY, device_uid VARCHAR(64) NOT NULL, epoch INTEGER "
               "NOT NULL, seq INTEGER NOT NULL, seq_last INTEGER NOT NULL, event_id VARCHAR(36) NOT NULL, type "
               "VARCHAR(32) NOT NULL, body JSON NOT NULL, device_time DATETIME, received_at DATETIME NOT NULL, at "
               "DATETIME, clock_flag VARCHAR(16), CONSTRAINT uq UNIQUE (device_uid, event_id))")
    db.execute("CREATE INDEX ix_seq ON device_events (device_uid, epoch, seq)")
    sql = f"INSERT INTO device_events ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
    began = time.perf_counter()
    for start in range(0, len(rows), per_transaction):
        db.execute("BEGIN")
        db.executemany(sql, rows[start:start + per_transaction])
        db.execute("COMMIT")
    elapsed = time.perf_counter() - began
    db.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return len(rows) / elapsed


def bare_postgresql(rows: list[tuple], url: str, per_transaction: int, copy: bool) -> float:
    """Rows per second into a new table in the same PostgreSQL database, made LIKE device_events (same columns,
    unique index and seq index), PER_TRANSACTION rows per commit: executemany (psycopg pipelines it) or COPY."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS bare_events")
        db.execute("CREATE TABLE bare_events (LIKE device_events INCLUDING ALL)")
        sql = f"INSERT INTO bare_events ({COLUMNS}) VALUES ({', '.join(['%s'] * 11)})"
        began = time.perf_counter()
        for start in range(0, len(rows), per_transaction):
            with db.transaction(), db.cursor() as cur:
                chunk = rows[start:start + per_transaction]
                if copy:
                    with cur.copy(f"COPY bare_events ({COLUMNS}) FROM STDIN") as out:
                        for row in chunk:
                            out.write_row(row)
                else:
                    cur.executemany(sql, chunk)
        elapsed = time.perf_counter() - began
        db.execute("DROP TABLE bare_events")
    return len(rows) / elapsed


COLUMNS = "device_uid, epoch, seq, seq_last, event_id, type, body, device_time, received_at, at, clock_flag"


class PostgresServer:
    """A new database for one run on the server --database names, dropped afterwards."""

    def __init__(self, url: str):
        from sqlalchemy.engine import make_url

        base = make_url(url).set(drivername="postgresql+psycopg")
        self.admin = base.set(database="postgres").render_as_string(hide_password=False)
        self.name = f"lc_bench_ingest_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.url = base.set(database=self.name).render_as_string(hide_password=False)

    def _sql(self, sql: str) -> None:
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        engine = create_engine(self.admin, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with engine.connect() as conn:
            conn.execute(text(sql))
        engine.dispose()

    def create(self) -> str:
        self._sql(f'CREATE DATABASE "{self.name}"')
        return self.url

    def drop(self) -> None:
        self._sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def run_once(args, root: Path) -> dict:
    """One pair: the ingest measured, then the bare insert of the rows it stored, on the same database."""
    shutil.rmtree(root / "data", ignore_errors=True)
    server = PostgresServer(args.database) if args.database else None
    database_url = server.create() if server else ""
    try:
        return _run_pair(args, root, database_url)
    finally:
        if server:
            server.drop()


def _run_pair(args, root: Path, database_url: str) -> dict:
    services = make_services(root / "data", port=free_port(), mqtt_port=free_port(), mqtt_server_port=free_port(),
                             database_url=database_url)
    lesson: list[int] = []
    answers = setup(services, args.devices, lesson)
    broker = MosquittoProcess(services).start()
    from tests.e2e.stack import stop

    logs = [root / f"ingest-{n}.log" for n in range(args.ingests)]
    for log in logs:
        log.unlink(missing_ok=True)
    ingests = [start_ingest(lessoncast_env(services), f"bench-ingest-{n}", log) for n, log in enumerate(logs)]
    radios: list[Radio] = []
    try:
        deadline = time.monotonic() + 30
        for log in logs:
            while "ingest connected" not in (log.read_text(errors="replace") if log.exists() else ""):
                if time.monotonic() > deadline:
                    raise SystemExit("ingest did not connect:\n" + log.read_text()[-2000:])
                time.sleep(0.1)
        if args.profile_pids is not None:
            args.profile_pids.extend(p.pid for p in ingests)
        # CPU from here on: what storing the events costs, not the processes' start (imports, about 2 s each).
        ingest_cpu_at_start = sum(_cpu_seconds(p.pid) for p in ingests)
        if args.source == "simulate":
            from bench import ingest_simulated

            rate, simulated_ids = ingest_simulated.drive(answers, root / "fleet", lesson[0], args.events_per_device,
                                                         args.warmup, args.seconds)
        else:
            radios = [Radio(a["device"], a["mqtt"]["password"], services.settings.mqtt_port, lesson[0])
                      for a in answers]
            time.sleep(1.0)
            rate, sent = drive(radios, args.window, args.warmup, args.seconds)
        deadline = time.monotonic() + 120
        while any(r.acked < r.next_seq - 1 for r in radios) and time.monotonic() < deadline:
            time.sleep(0.2)
        ingest_cpu_s = sum(_cpu_seconds(p.pid) for p in ingests) - ingest_cpu_at_start
    finally:
        for radio in radios:
            radio.close()
        for proc in ingests:
            stop(proc, signal.SIGTERM)
        broker.stop()

    sent_ids = simulated_ids if args.source == "simulate" else {i for r in radios for i in r.ids}
    with services.db.session() as session:
        stored = session.scalar(select(func.count()).select_from(DeviceEvent))
        distinct = session.scalar(select(func.count(func.distinct(DeviceEvent.event_id))))
        counted = session.scalar(select(func.coalesce(func.sum(DeviceSequence.events), 0)))
    services.db.dispose()
    if database_url:
        import psycopg

        with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as db:
            rows = db.execute(f"SELECT {COLUMNS} FROM device_events ORDER BY id").fetchall()
        lost = len(sent_ids - {r[4] for r in rows})
        from psycopg.types.json import Json

        rows = [(*r[:6], Json(r[6]), *r[7:]) for r in rows]  # the body column is JSON
        bare_rate = bare_postgresql(rows, database_url, BATCH, copy=False)
        bare_copy = bare_postgresql(rows, database_url, BATCH, copy=True)
        bare_one = bare_postgresql(rows, database_url, len(rows), copy=True)
    else:
        db_path = services.data / "lessoncast.db"
        with sqlite3.connect(db_path) as db:
            rows = db.execute(f"SELECT {COLUMNS} FROM device_events ORDER BY id").fetchall()
        lost = len(sent_ids - {r[4] for r in rows})
        bare_rate = bare_sqlite(rows, db_path.parent / "bare.db", BATCH)
        bare_copy = None
        bare_one = bare_sqlite(rows, db_path.parent / "bare.db", len(rows))
    duplicated = (stored - distinct) + (counted - stored)
    return {"events_per_s": round(rate), "bare_rows_per_s": round(bare_rate), "ratio": round(rate / bare_rate, 3),
            "ingest_cpu_ms_per_1000_events": round(1000 * ingest_cpu_s / max(stored, 1) * 1000, 1),
            "lost": lost, "duplicated": duplicated, "sent": len(sent_ids), "stored": stored,
            "bare_copy_rows_per_s": None if bare_copy is None else round(bare_copy),
            "bare_one_transaction_rows_per_s": round(bare_one)}


def _cpu_seconds(pid: int) -> float:
    """CPU time (user and system) a process has used so far, from /proc: what the ingest costs per event whatever
    else the machine runs, unlike a rate."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spread(values: list[float]) -> dict:
    """Median, minimum and maximum."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds of each run (after the warm-up)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of publishing before measuring")
    parser.add_argument("--devices", type=int, default=60, help="radios publishing at once")
    parser.add_argument("--window", type=int, default=AgentOptions().window,
                        help="batches each radio keeps unacked (default: the agent's)")
    parser.add_argument("--ingests", type=int, default=None,
                        help="ingest processes sharing the subscription (default: the product's, "
                             "LESSONCAST_INGEST_PROCESSES, as lessoncast run starts)")
    parser.add_argument("--runs", type=int, default=3, help="pairs (ingest, then bare insert) to run; the median "
                                                            "and the spread are reported")
    parser.add_argument("--database", default="",
                        help="a PostgreSQL server URL (postgresql://user@host:port/db): each run makes a new database "
                             "there and drops it after; default SQLite in the instance's folder")
    parser.add_argument("--keep", type=Path, default=None, help="keep the last instance here")
    parser.add_argument("--source", choices=("raw", "simulate"), default="raw",
                        help="raw: paho clients publishing prepared batches; simulate: the fleet simulator's agents "
                             "delivering their outboxes (bench/ingest_simulated.py)")
    parser.add_argument("--events-per-device", type=int, default=3000,
                        help="with --source simulate: events in each agent's outbox at the start")
    parser.add_argument("--py-spy", type=Path, default=None, dest="py_spy",
                        help="record a py-spy profile of the ingest processes of the first run into this folder")
    args = parser.parse_args()
    if args.ingests is None:
        from server import settings as settings_mod

        args.ingests = settings_mod.load(environ={}).ingest_processes
    if args.database and not args.database.startswith("postgresql"):
        parser.error(f"--database {args.database}: only postgresql://... URLs are measured (SQLite is the default)")
    root = args.keep or Path(tempfile.mkdtemp(prefix="lc-bench-ingest-"))
    results = []
    for n in range(args.runs):
        args.profile_pids = [] if args.py_spy and n == 0 else None
        profiler = _profile(args) if args.profile_pids is not None else None
        results.append(run_once(args, root))
        if profiler:
            profiler.join()
        print(f"run {n + 1}: " + json.dumps(results[-1]), flush=True)
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    rates = spread([r["events_per_s"] for r in results])
    bares = spread([r["bare_rows_per_s"] for r in results])
    ratios = spread([r["ratio"] for r in results])
    cpu = spread([r["ingest_cpu_ms_per_1000_events"] for r in results])
    lost, duplicated = sum(r["lost"] for r in results), sum(r["duplicated"] for r in results)
    store = "PostgreSQL" if args.database else "SQLite"
    print(f"{'':<56}{'median':>10}{'min':>10}{'max':>10}")
    for label, s_ in ((f"lessoncast ingest x{args.ingests} ({args.source}, MQTT -> {store}, acked)", rates),
                      (f"bare executemany into {store}, a commit per 200 rows", bares)):
        print(f"{label:<56}{s_['median']:>10,.0f}{s_['min']:>10,.0f}{s_['max']:>10,.0f}")
    print(f"{'ratio (target >= 0.5)':<56}{ratios['median']:>10.2f}{ratios['min']:>10.2f}{ratios['max']:>10.2f}")
    print(f"{'ingest CPU ms per 1,000 events stored (all processes)':<56}{cpu['median']:>10.0f}{cpu['min']:>10.0f}"
          f"{cpu['max']:>10.0f}")
    print(f"{args.runs} runs of {args.seconds:g} s, {args.devices} radios; lost {lost}, duplicated {duplicated}")
    print(json.dumps({"database": store.lower(), "source": args.source, "events_per_s": rates,
                      "bare_rows_per_s": bares, "ratio": ratios, "ingest_cpu_ms_per_1000_events": cpu, "lost": lost,
                      "duplicated": duplicated, "runs": results, "seconds": args.seconds, "devices": args.devices, "ingests": args.ingests, "batch": BATCH, "cpus": os.cpu_count()}))


def _profile(args) -> threading.Thread:
    """py-spy record of each ingest process for the measured seconds of the first run (flame graphs, SVG)."""
    import subprocess

    def record() -> None:
        deadline = time.monotonic() + 120
        while not args.profile_pids and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(args.warmup)
        args.py_spy.mkdir(parents=True, exist_ok=True)
        procs = [subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
                                   "--duration", str(int(args.seconds)), "--rate", "50", "--format", "raw",
                                   "-o", str(args.py_spy / f"ingest-{pid}.txt")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid in args.profile_pids]
        for proc in procs:
            proc.wait()

    thread = threading.Thread(target=record, daemon=True)
    thread.start()
    return thread


if __name__ == "__main__":
    main()
