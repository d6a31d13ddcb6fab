"""Slot days from the command line (--slot 07:00@mon-fri) and across the 0010 migration: stored slots gain
every day on upgrade, and a downgrade refuses to widen a day-restricted slot silently."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from lessoncast.cli import main
from playlists.model import WEEKDAYS
from server import migrate
from server.programmes import service as programmes
from tests.conftest import cli_env

WEEK = list(WEEKDAYS)


def test_cli_slots_take_days_as_lists_and_ranges(org):
    run = lambda *args: CliRunner().invoke(main, list(args), env=cli_env(org), catch_exceptions=False)
    made = run("programme", "create", "--code", "2026-Q4", "--title", "第四季度", "--from", "2026-10-01",
               "--until", "2026-12-31", "--slot", "07:00@mon-fri", "--slot", "19:30/class@sat,sun",
               "--slot", "12:00")
    assert made.exit_code == 0, made.output
    with org.db.session() as session:
        slots = programmes.programme_json(programmes.get(session, "2026-Q4"))["slots"]
    assert [(s["time"], s["kind"], s["days"]) for s in slots] == [
        ("07:00", "broadcast", ["mon", "tue", "wed", "thu", "fri"]), ("12:00", "broadcast", WEEK),
        ("19:30", "class", ["sat", "sun"])]


@pytest.mark.parametrize("slot, says", [
    ("07:00@fri-mon", "fri-mon 不是星期范围"),   # the option's own words, in the command line's language
    ("07:00@funday", "'funday' is not a day"),  # the service's refusals, as the CLI shows every DomainError
    ("07:00@", "days is empty"),
    ("07:00@mon,mon", "mon is listed twice"),
])
def test_cli_bad_days_are_refused_saying_what_to_write(org, slot, says):
    run = CliRunner().invoke(main, ["programme", "create", "--code", "X", "--title", "x", "--from", "2026-10-01",
                                    "--until", "2026-12-31", "--slot", slot], env=cli_env(org))
    assert run.exit_code != 0 and says in run.output, run.output
    with org.db.session() as session:
        assert session.execute(text("SELECT count(*) FROM programmes")).scalar() == 0


def _programme(conn, pid: int, slots: list) -> None:
    conn.execute(text("INSERT INTO programmes (id, code, version, title, valid_from, valid_until, slots, state, "
                      "created_at) VALUES (:id, :code, 1, 't', '2026-10-01', '2026-12-31', :slots, 'published', "
                      "'2026-09-01 00:00:00')"), {"id": pid, "code": f"P{pid}", "slots": json.dumps(slots)})


def _slots(engine) -> dict[int, list]:
    with engine.connect() as conn:
        return {row.id: json.loads(row.slots) for row in conn.execute(text("SELECT id, slots FROM programmes"))}


def test_migration_0010_gives_stored_slots_every_day_and_takes_it_back(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate.upgrade(url, "0009")
    engine = create_engine(url)
    before = [{"time": "07:00", "kind": "broadcast", "item_position": None},
              {"time": "19:30", "kind": "class", "item_position": 1}]
    with engine.begin() as conn:
        _programme(conn, 1, before)
        _programme(conn, 2, [])
    migrate.upgrade(url)
    assert _slots(engine) == {1: [{**s, "days": WEEK} for s in before], 2: []}
    migrate.downgrade(url, "0009")
    assert _slots(engine) == {1: before, 2: []}
    engine.dispose()


def test_migration_0010_downgrade_refuses_to_widen_a_day_restricted_slot(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate.upgrade(url)
    engine = create_engine(url)
    weekdays = [{"time": "07:00", "kind": "broadcast", "item_position": None, "days": ["mon", "tue"]}]
    with engine.begin() as conn:
        _programme(conn, 1, weekdays)
    with pytest.raises(RuntimeError, match=r"P1 v1 07:00.*Remove or widen them"):
        migrate.downgrade(url, "0009")
    assert _slots(engine) == {1: weekdays}
    engine.dispose()
