"""Benchmark: the participation report, the study-hours report and the site logbooks over the same county at
50,000 and at 5,000,000 events.

A report reads only the attendance aggregates that ingest keeps up to date, so its cost should follow the number of
members and sites, not the number of events. This builds two databases with the same county (townships, sites,
members, radios, terminals, lessons, a published 2026-Q4 programme) and the same calendar of class sessions and
broadcasts, then stores 50,000 and 5,000,000 events through ingest's own path (``server.events.ingest.store_in``, device
batches of 1,000, attendance folded in as they are stored). With more events, radios listen more (longer sittings,
replays, more lessons) and the terminals' plays are reported in finer progress steps; the county stays the same.

It times ``server.attendance.reports.participation`` for 2026-Q4 (every table: county, townships, sites, members, sites
without a class, the untrained list of the year) plus its JSON rendering, best of --repeat runs, on each database,
and prints the ratio. It does the same for the study-hours report of 2026 (``server.training.hours.collect``, every
member against quota, sites and townships, as JSON) and for the logbooks of every site for November 2026
(``server.training.logbooks.logbook`` for each site, as XLSX, plus the month's site-rules check). Target for each:
large ≤ 2 × small.

    .venv/bin/python bench/report.py                      # 50k vs 5M events (building the 5M takes minutes)
    .venv/bin/python bench/report.py --large 500000       # a quicker look
    .venv/bin/python bench/report.py --keep /tmp/lc-bench # keep (and reuse) the databases
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.attendance import fold as attendance, report_export, reports  # noqa: E402
from sqlalchemy import select  # noqa: E402

from server.accounts.scope import COUNTY  # noqa: E402
from server.instance import initialise  # noqa: E402
from server.org.models import Site  # noqa: E402
from server.training import hours, hours_export, logbooks  # noqa: E402
from tests import attendance_data as ad  # noqa: E402
from tests.conftest import make_services  # noqa: E402

Q4 = datetime(2026, 10, 1, tzinfo=timezone.utc)
RECEIVED = datetime(2027, 1, 5, tzinfo=timezone.utc)
CLASS_TIMES = [Q4 + timedelta(days=d, hours=11) for d in (9, 23, 37, 51, 65, 79)]  # 19:00 local, fortnightly


def county(services, args):
    return ad.build_county(services, townships=args.townships, sites_per_township=args.sites,
                           members_per_site=args.members, radios_per_site=args.radios, lessons=6,
                           durations=(900.0, 1200.0, 1500.0, 1800.0))


def radio_events(c, rng: random.Random, count: int) -> list[dict]:
    bodies: list[dict] = []
    while len(bodies) < count:
        lesson, sha, duration = rng.choice(c.lessons)
        at = Q4 + timedelta(days=rng.uniform(0, 90), hours=rng.uniform(0, 14))
        play_id, pos = str(uuid.uuid4()), rng.choice([0.0, rng.uniform(0, duration)])
        while pos < duration and len(bodies) < count:
            step = rng.uniform(30, 120)
            at += timedelta(seconds=step)
            bodies.append(ad.play(at, c.programme, lesson, sha, pos, min(duration, pos + step), play_id=play_id))
            pos += step
    return ad.numbered(bodies)


def calendar_events(args) -> int:
    """Events of the smallest report of a terminal's calendar: check-ins and one event per play."""
    return len(CLASS_TIMES) * (min(args.members, 12) + 1) + 92


def terminal_events(c, site_id: int, members: list[str], rng: random.Random, count: int) -> list[dict]:
    """The same calendar at every size: six classes (check-ins, then the lesson) and a daily broadcast; COUNT only
    decides how finely the plays are reported."""
    occasions = [(at, "key", None) for at in CLASS_TIMES]
    occasions += [(Q4 + timedelta(days=d, hours=-1), "schedule", "broadcast") for d in range(92)]  # 07:00 local
    checkins = len(CLASS_TIMES) * min(len(members), 12)
    per_play = max(1, (count - checkins) // len(occasions))
    bodies: list[dict] = []
    for n, (at, trigger, slot) in enumerate(occasions):
        lesson, sha, duration = c.lessons[n % len(c.lessons)]
        play_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{site_id}/{n}"))
        if trigger == "key":
            bodies += [ad.checkin(at - timedelta(minutes=rng.uniform(0, 20)), m)
                       for m in rng.sample(members, k=min(len(members), 12))]
        step = duration / per_play
        for k in range(per_play):
            bodies.append(ad.play(at + timedelta(seconds=step * (k + 1)), c.programme, lesson, sha, step * k,
                                  step * (k + 1), play_id=play_id, trigger=trigger, slot_kind=slot))
    return ad.numbered(bodies)


def build(path: Path, args, total: int) -> object:
    marker = path / "built.json"
    if marker.exists() and json.loads(marker.read_text()).get("events") == total:
        return make_services(path)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    services = make_services(path)
    initialise(services)
    c = county(services, args)
    rng = random.Random(7)
    members_by_site: dict[int, list[str]] = {}
    for _id, no, site in c.members:
        members_by_site.setdefault(site, []).append(no)
    # Every terminal reports its whole calendar (classes with check-ins, daily broadcasts) at any size; a larger
    # total only reports the plays in finer steps. The radios send the rest, so the total is exact.
    per_terminal = max(calendar_events(args), total // 10 // len(c.terminals))
    terminal_raw = [(uid, terminal_events(c, site, members_by_site[site], rng, per_terminal))
                    for uid, site in c.terminals]
    radio_total = total - sum(len(raw) for _uid, raw in terminal_raw)
    if radio_total < len(c.radios):
        raise SystemExit(f"{total:,} events are too few for this county's calendar; give at least "
                         f"{total - radio_total + len(c.radios):,}")
    per_radio, extra = divmod(radio_total, len(c.radios))
    lookups = attendance.Lookups(ttl_s=3600)
    started, done = time.perf_counter(), 0
    for uid, raw in terminal_raw:
        ad.store(services, uid, raw, RECEIVED, batch=1000, lookups=lookups)
        done += len(raw)
    for n, (uid, _member) in enumerate(c.radios):
        raw = radio_events(c, rng, per_radio + (1 if n < extra else 0))
        ad.store(services, uid, raw, RECEIVED, batch=1000, lookups=lookups)
        done += len(raw)
        if n % 500 == 0:
            print(f"  {path.name}: {done:,} of {total:,} events stored "
                  f"({done / (time.perf_counter() - started):,.0f}/s)", file=sys.stderr)
    assert done == total, (done, total)
    marker.write_text(json.dumps({"events": done}))
    print(f"  {path.name}: {done:,} events stored in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return services


def time_report(services, repeat: int) -> tuple[float, dict]:
    best, summary = float("inf"), {}
    for _ in range(repeat):
        with services.db.session() as session:
            t0 = time.perf_counter()
            report = reports.participation(session, "2026-Q4", services.rules, now=RECEIVED)
            report_export.render(report_export.tables(report), report_export.report_meta(report), "json")
            best = min(best, time.perf_counter() - t0)
        summary = {"members": len(report.members), "sites": len(report.sites), "rate": report.county.rate,
                   "classes": report.county.classes, "untrained": len(report.untrained_this_year)}
    return best, summary


def time_hours(services, repeat: int) -> tuple[float, dict]:
    """Best time of the study-hours report of 2026 with its JSON rendering."""
    best, report = float("inf"), None
    hrules = hours.hour_rules_from(services.settings)
    for _ in range(repeat):
        with services.db.session() as session:
            t0 = time.perf_counter()
            report = hours.collect(session, 2026, services.rules, hrules, now=RECEIVED)
            report_export.render(hours_export.tables(report), hours_export.meta(report), "json")
            best = min(best, time.perf_counter() - t0)
    return best, {"members": len(report.members), "hours": report.county.hours,
                  "below_quota": report.county.below_quota}


def time_logbooks(services, repeat: int) -> tuple[float, dict]:
    """Best time of every site's November logbooks as XLSX, plus the month's site-rules check."""
    best, rows, short = float("inf"), 0, 0
    hrules = hours.hour_rules_from(services.settings)
    site_rules = logbooks.site_rules_from(services.settings)
    report_export.render([], {}, "xlsx")  # openpyxl's first import (a second) belongs to neither size
    for _ in range(max(2, repeat // 2)):
        with services.db.session() as session:
            codes = list(session.scalars(select(Site.code).order_by(Site.code)))
            t0 = time.perf_counter()
            rows = 0
            for code in codes:
                tables, meta = logbooks.logbook(session, code, "2026-11", services.rules, hrules, COUNTY)
                report_export.render(tables, meta, "xlsx")
                rows += sum(len(t.rows) for t in tables)
            short = sum(1 for s in logbooks.shortfalls(session, "2026-11", services.rules, site_rules) if s.short)
            best = min(best, time.perf_counter() - t0)
    return best, {"sites": len(codes), "rows": rows, "short": short}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=50_000)
    parser.add_argument("--large", type=int, default=5_000_000)
    parser.add_argument("--townships", type=int, default=10)
    parser.add_argument("--sites", type=int, default=20, help="sites per township")
    parser.add_argument("--members", type=int, default=50, help="members per site")
    parser.add_argument("--radios", type=int, default=20, help="radios per site")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", type=Path, default=None, help="keep the databases here (and reuse them)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="lc-bench-report-"))
    try:
        small = build(root / "small", args, args.small)
        large = build(root / "large", args, args.large)
        small_s, small_summary = time_report(small, args.repeat)
        large_s, large_summary = time_report(large, args.repeat)
        small_h, small_hs = time_hours(small, args.repeat)
        large_h, large_hs = time_hours(large, args.repeat)
        small_l, small_ls = time_logbooks(small, args.repeat)
        large_l, large_ls = time_logbooks(large, args.repeat)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    ratio = large_s / small_s
    print(f"{'events':>12} {'report (s)':>11}  summary")
    print(f"{args.small:>12,} {small_s:>11.3f}  {small_summary}")
    print(f"{args.large:>12,} {large_s:>11.3f}  {large_summary}")
    print(f"ratio {ratio:.2f} (target <= 2.0)")
    hours_ratio, logbook_ratio = large_h / small_h, large_l / small_l
    print(f"{'events':>12} {'hours (s)':>11}  summary")
    print(f"{args.small:>12,} {small_h:>11.3f}  {small_hs}")
    print(f"{args.large:>12,} {large_h:>11.3f}  {large_hs}")
    print(f"study-hours ratio {hours_ratio:.2f} (target <= 2.0)")
    print(f"{'events':>12} {'logbooks (s)':>12}  summary")
    print(f"{args.small:>12,} {small_l:>12.3f}  {small_ls}")
    print(f"{args.large:>12,} {large_l:>12.3f}  {large_ls}")
    print(f"logbooks ratio {logbook_ratio:.2f} (target <= 2.0)")
    print(json.dumps({"small_events": args.small, "large_events": args.large, "small_s": round(small_s, 4),
                      "large_s": round(large_s, 4), "ratio": round(ratio, 3),
                      "hours_small_s": round(small_h, 4), "hours_large_s": round(large_h, 4),
                      "hours_ratio": round(hours_ratio, 3), "logbooks_small_s": round(small_l, 4),
                      "logbooks_large_s": round(large_l, 4), "logbooks_ratio": round(logbook_ratio, 3),
                      "members": small_summary.get("members"), "sites": small_summary.get("sites")}))


if __name__ == "__main__":
    main()
