"""API tokens: an optional expiry (by default for operator tokens), a clear 401 once expired, and an operator token's
township given by code or name, refused when it does not exist; the documented commands work as written."""

from __future__ import annotations

import re
import shlex
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from lessoncast.cli import main
from server.accounts.auth import create_token, token_expiry
from server.accounts.models import ApiToken
from server.devices import registry as devices
from server.org.service import import_sites
from tests.conftest import SITES_CSV, make_services

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "OPERATIONS.md"


def _tokens(services) -> list[ApiToken]:
    with services.db.session() as session:
        rows = session.scalars(select(ApiToken).order_by(ApiToken.id)).all()
        session.expunge_all()
        return rows


@pytest.fixture
def instance(tmp_path):
    """An instance with the two townships of the `org` fixture (qs 青山镇, hw 海湾镇), and the CLI's environment."""
    services = make_services(tmp_path / "data")
    import_sites(services, SITES_CSV, "test")
    yield services, {"LESSONCAST_DATA_DIR": str(tmp_path / "data")}
    services.db.dispose()


def _create(env, *args):
    return CliRunner().invoke(main, ["token", "create", *args], env=env)


# ---------------------------------------------------------------------------------------------------------------
# Expiry


def test_an_expired_token_is_refused_with_what_to_do(org, client, services):
    now = services.clock()
    with services.db.session() as session:
        value = create_token(session, name="qingshan", role="operator", township="qs", now=now,
                             expires_at=now + timedelta(days=1))
    headers = {"Authorization": f"Bearer {value}"}
    assert client.get("/api/v1/devices", headers=headers).status_code == 200
    later = now + timedelta(days=1, seconds=1)
    services.clock = lambda: later
    refused = client.get("/api/v1/devices", headers=headers)
    assert refused.status_code == 401
    error = refused.get_json()["error"]
    assert error["code"] == "token_expired"
    assert "expired on" in error["message"]
    assert "lessoncast token create --role operator --township qs" in error["message"]


def test_operator_tokens_expire_after_the_setting_by_default(instance):
    services, env = instance
    assert _create(env, "--role", "operator", "--name", "op", "--township", "qs").exit_code == 0
    assert _create(env, "--role", "operator", "--name", "op-forever", "--township", "qs",
                   "--expires-in", "0").exit_code == 0
    assert _create(env, "--role", "media", "--name", "office").exit_code == 0
    assert _create(env, "--role", "viewer", "--name", "zuzhibu", "--expires-in", "30").exit_code == 0
    shorter = _create(env | {"LESSONCAST_OPERATOR_TOKEN_DAYS": "7"}, "--role", "operator", "--name", "op7",
                      "--township", "qs")
    assert shorter.exit_code == 0 and "valid until" in shorter.stderr
    lifetimes = {t.name: (t.expires_at - t.created_at if t.expires_at else None) for t in _tokens(services)}
    assert lifetimes == {"op": timedelta(days=services.settings.operator_token_days), "op-forever": None,
                         "office": None, "zuzhibu": timedelta(days=30), "op7": timedelta(days=7)}
    assert services.settings.operator_token_days == 180
    listed = CliRunner().invoke(main, ["token", "list"], env=env).output
    assert re.search(r"op-forever .* expires never", listed) and re.search(r"zuzhibu .* expires 20\d\d-", listed)


def test_token_expiry_rules():
    from datetime import datetime, timezone

    now = datetime(2026, 12, 3, tzinfo=timezone.utc)
    assert token_expiry("operator", None, 180, now) == now + timedelta(days=180)
    assert token_expiry("operator", None, 0, now) is None
    assert token_expiry("operator", 0, 180, now) is None
    assert token_expiry("admin", None, 180, now) is None
    assert token_expiry("admin", 2, 180, now) == now + timedelta(days=2)
    with pytest.raises(ValueError, match="1 or more days"):
        token_expiry("admin", -1, 180, now)


def test_a_negative_expiry_is_refused_by_the_command(instance):
    _services, env = instance
    result = _create(env, "--role", "media", "--name", "x", "--expires-in", "-3")
    assert result.exit_code == 2 and "'--expires-in': -3 is not in the range x>=0" in result.output


# ---------------------------------------------------------------------------------------------------------------
# The township of an operator token


def test_token_create_refuses_a_township_that_does_not_exist(instance):
    services, env = instance
    result = _create(env, "--role", "operator", "--name", "qingshan", "--township", "Qingshan")
    assert result.exit_code == 2
    assert "no township 'Qingshan'" in result.output and "qs (青山镇)" in result.output
    assert _tokens(services) == []


def test_token_create_accepts_the_township_name_or_code(instance):
    services, env = instance
    assert _create(env, "--role", "operator", "--name", "by-name", "--township", "青山镇").exit_code == 0
    assert _create(env, "--role", "operator", "--name", "by-code", "--township", "qs").exit_code == 0
    assert [(t.name, t.township) for t in _tokens(services)] == [("by-name", "qs"), ("by-code", "qs")]


def test_a_township_only_for_operator_tokens(instance):
    services, env = instance
    result = _create(env, "--role", "media", "--name", "office", "--township", "qs")
    assert result.exit_code == 2 and "only operator tokens have a township" in result.output
    assert _tokens(services) == []


def test_two_townships_of_one_name_need_the_code(instance):
    services, env = instance
    import_sites(services, "township_code,township_name,site_code,site_name\nqs2,青山镇,qs2-01,北村\n".encode(),
                 "test")
    result = _create(env, "--role", "operator", "--name", "op", "--township", "青山镇")
    assert result.exit_code == 2 and "2 townships are named '青山镇'" in result.output
    assert _create(env, "--role", "operator", "--name", "op", "--township", "qs2").exit_code == 0


def test_the_documented_token_commands_work_and_the_operator_sees_their_township(instance):
    """docs/OPERATIONS.md's examples, run as written: the operator token covers 青山镇 and sees its devices."""
    from server.app import create_app

    services, env = instance
    section = OPERATIONS.read_text(encoding="utf-8").split("## API tokens", 1)[1].split("```sh", 1)[1]
    commands = [shlex.split(line.split("#", 1)[0]) for line in section.split("```", 1)[0].splitlines()
                if line.startswith("lessoncast token create")]
    assert any("--township" in argv for argv in commands), "the docs show an operator token"
    values = {}
    for argv in commands:
        result = CliRunner().invoke(main, argv[1:], env=env)
        assert result.exit_code == 0, (argv, result.output)
        values[argv[argv.index("--role") + 1]] = result.stdout.strip().splitlines()[-1]
    with services.db.session() as session:
        qs = devices.add(services, session, kind="radio", name="青山 radio", site_code="qs-01", actor="test").uid
        devices.add(services, session, kind="radio", name="海湾 radio", site_code="hw-01", actor="test")
    client = create_app(services=services).test_client()
    listed = client.get("/api/v1/devices", headers={"Authorization": f"Bearer {values['operator']}"}).get_json()
    assert [d["id"] for d in listed["devices"]] == [qs]
