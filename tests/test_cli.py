"""The lessoncast command: lazy subcommands, token creation, config printing and folder import."""

import subprocess
import sys

import pytest
from click.testing import CliRunner

from lessoncast.cli import main
from tests.generated_media import tone


def _env(tmp_path, **extra):
    return {"LESSONCAST_DATA_DIR": str(tmp_path / "data"), **extra}


def _initialised(tmp_path, **extra):
    """The environment of an instance `lessoncast init` created (no other command creates one)."""
    env = _env(tmp_path, **extra)
    result = CliRunner().invoke(main, ["init"], env=env)
    assert result.exit_code == 0, result.output
    return env


def test_help_imports_no_server_code():
    code = ("import sys; from lessoncast.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('flask', 'sqlalchemy', 'server', 'media', 'ffmpeg', 'huey') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
    assert "run" in out and "import" in out


def test_token_create_prints_token_last(tmp_path):
    env = _initialised(tmp_path)
    result = CliRunner().invoke(main, ["token", "create", "--role", "media", "--name", "office"], env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1].startswith("lc_")
    listed = CliRunner().invoke(main, ["token", "list"], env=env)
    assert "office" in listed.output and "lc_" not in listed.output


def test_token_create_refuses_bad_role(tmp_path):
    result = CliRunner().invoke(main, ["token", "create", "--role", "boss", "--name", "x"], env=_env(tmp_path))
    assert result.exit_code == 2 and "boss" in result.output


def test_config_masks_secrets_and_names_sources(tmp_path):
    env = _initialised(tmp_path, LESSONCAST_REDIS_URL="redis://:s3cret@127.0.0.1:6379/0", LESSONCAST_PORT="9999")
    result = CliRunner().invoke(main, ["config"], env=env)
    assert result.exit_code == 0
    assert "s3cret" not in result.output
    assert "LESSONCAST_PORT" in result.output and "9999" in result.output and "[environment]" in result.output


def test_config_reports_bad_values(tmp_path):
    result = CliRunner().invoke(main, ["config"], env=_env(tmp_path, LESSONCAST_PORT="http"))
    assert result.exit_code == 1 and "LESSONCAST_PORT" in result.output


def test_import_folder_from_usb_stick(tmp_path):
    stick = tmp_path / "usb"
    (stick / "冬训" / ".Trashes").mkdir(parents=True)
    tone(stick / "冬训" / "第一讲.mp3", 2)
    tone(stick / "冬训" / "第二讲.wav", 2, frequency=660)
    (stick / "冬训" / "说明.txt").write_text("not media")
    (stick / "冬训" / "broken.mp3").write_text("this is not audio")
    tone(stick / "冬训" / ".Trashes" / "old.mp3", 1)
    _initialised(tmp_path)
    result = CliRunner().invoke(main, ["import", str(stick), "--series", "2026 冬训"], env=_env(tmp_path))
    assert result.exit_code == 1, result.output  # one file was refused
    assert "2 imported, 0 already there, 1 refused" in result.output
    assert "broken.mp3: refused" in result.output
    again = CliRunner().invoke(main, ["import", str(stick / "冬训" / "第一讲.mp3")], env=_env(tmp_path))
    assert again.exit_code == 0 and "already there" in again.output
    listing = CliRunner().invoke(main, ["lesson", "list"], env=_env(tmp_path))
    assert "第一讲" in listing.output and "第二讲" in listing.output


def test_the_command_table_help_is_each_commands_own_summary():
    import importlib

    from lessoncast.cli import COMMANDS

    for name, (module, attr, summary) in COMMANDS.items():
        command = getattr(importlib.import_module(module), attr)
        own = " ".join((command.help or "").strip().split("\n\n")[0].split())
        assert summary == own, f"lessoncast {name}: the table says {summary!r}, the command {own!r}"


def test_choices_come_from_the_domain_constants():
    from server.accounts.models import ROLES
    from server.cli.devices import device
    from server.cli.stack import token
    from server.devices.models import DEVICE_KINDS, DEVICE_STATES
    from server.devices.registry import COMMAND_TYPES

    def choices(command, param):
        return tuple(next(p for p in command.params if p.name == param).type.choices)

    assert choices(token.commands["create"], "role") == tuple(ROLES)
    assert choices(device.commands["add"], "kind") == tuple(DEVICE_KINDS)
    assert choices(device.commands["list"], "state") == tuple(DEVICE_STATES)
    assert choices(device.commands["command"], "kind") == tuple(COMMAND_TYPES)


def _no_instance_env(tmp_path):
    """Nothing set, nothing recorded: a newcomer's shell, with the config and data homes under TMP_PATH."""
    return {"LESSONCAST_DATA_DIR": None, "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "XDG_DATA_HOME": str(tmp_path / "share"), "LANG": "en_US.UTF-8"}


def test_a_command_from_another_folder_finds_the_instance_init_recorded(tmp_path, monkeypatch):
    env = _no_instance_env(tmp_path)
    (tmp_path / "checkout").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "checkout")
    made = CliRunner().invoke(main, ["init"], env={**env, "LESSONCAST_DATA_DIR": "county"})  # relative, on purpose
    assert made.exit_code == 0, made.output
    instance = tmp_path / "checkout" / "county"
    assert (tmp_path / "config" / "lessoncast" / "instance").read_text().strip() == str(instance)
    monkeypatch.chdir(tmp_path / "elsewhere")
    created = CliRunner().invoke(main, ["token", "create", "--role", "viewer", "--name", "from-elsewhere"], env=env)
    assert created.exit_code == 0, created.output
    listed = CliRunner().invoke(main, ["token", "list"], env=env)
    assert "from-elsewhere" in listed.output
    shown = CliRunner().invoke(main, ["config"], env=env)
    assert f"{instance}    [recorded in {tmp_path / 'config' / 'lessoncast' / 'instance'}]" in shown.output
    assert list((tmp_path / "elsewhere").iterdir()) == [], "no second county in the current folder"
    assert not (tmp_path / "share").exists()


@pytest.mark.parametrize("argv", [["token", "list"], ["lesson", "list"], ["db", "upgrade"], ["keys", "init"],
                                  ["org", "list", "sites"], ["config"]])
def test_a_command_without_an_instance_refuses_and_creates_nothing(tmp_path, monkeypatch, argv):
    env = _no_instance_env(tmp_path)
    monkeypatch.chdir(tmp_path)
    refused = CliRunner().invoke(main, argv, env={**env, "LESSONCAST_ROOT_PASSPHRASE": "x"})
    assert refused.exit_code == 1, refused.output
    default = tmp_path / "share" / "lessoncast"
    assert f"No lessoncast instance in {default}" in refused.output
    assert "LESSONCAST_DATA_DIR" in refused.output and "lessoncast init" in refused.output
    assert str(tmp_path / "config" / "lessoncast" / "instance") in refused.output, "it says where it looked"
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "nothing created"
    pointed = CliRunner().invoke(main, argv, env={**env, "LESSONCAST_DATA_DIR": str(tmp_path / "typo")})
    assert pointed.exit_code == 1 and f"No lessoncast instance in {tmp_path / 'typo'}" in pointed.output
    assert not (tmp_path / "typo").exists()


def test_config_shows_sizes_as_people_read_them(tmp_path):
    shown = CliRunner().invoke(main, ["config"], env=_initialised(tmp_path, LESSONCAST_MAX_UPLOAD_SIZE="4G"))
    assert "LESSONCAST_MAX_UPLOAD_SIZE" in shown.output and "4 GiB" in shown.output
    assert "4294967296" not in shown.output


def test_init_without_a_writable_config_folder_still_works_and_says_how_to_point_commands(tmp_path):
    blocked = tmp_path / "config"
    blocked.write_text("a file where the config folder would be")
    env = {"LESSONCAST_DATA_DIR": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(blocked), "LANG": "en_US.UTF-8"}
    made = CliRunner().invoke(main, ["init"], env=env)
    assert made.exit_code == 0, made.output
    assert f"LESSONCAST_DATA_DIR={tmp_path / 'data'}" in made.output
