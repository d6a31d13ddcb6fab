"""Settings: one table, read from the environment, the instance file and defaults, documented in full."""

from pathlib import Path

import pytest

from server import settings as settings_mod

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_work_on_one_machine(tmp_path):
    s = settings_mod.load(environ={"LESSONCAST_DATA_DIR": str(tmp_path)})
    assert s.port == 8750
    assert s.db_url == f"sqlite:///{tmp_path.resolve() / 'lessoncast.db'}"
    assert s.max_upload_size == 4 * 1024**3 and s.max_duration == 4 * 3600
    assert (s.max_width, s.max_height) == (3840, 2160)
    assert s.sources["port"] == "default"


def test_environment_beats_file_beats_default(tmp_path):
    (tmp_path / "lessoncast.toml").write_text('port = 9001\nmax_upload_size = "500M"\nmqtt_port = 2883\n')
    s = settings_mod.load(environ={"LESSONCAST_DATA_DIR": str(tmp_path), "LESSONCAST_PORT": "9100"})
    assert s.port == 9100 and s.sources["port"] == "environment"
    assert s.max_upload_size == 500 * 1024**2 and s.sources["max_upload_size"].endswith("lessoncast.toml")
    assert s.mqtt_port == 2883
    assert s.web_workers == 2 and s.sources["web_workers"] == "default"


@pytest.mark.parametrize("env, fragment", [
    ({"LESSONCAST_PORT": "eighty"}, "LESSONCAST_PORT"),
    ({"LESSONCAST_MEDIA_REQUIRE_TOKEN": "perhaps"}, "expected true or false"),
    ({"LESSONCAST_MAX_DURATION": "long"}, "LESSONCAST_MAX_DURATION"),
])
def test_bad_values_name_the_setting(tmp_path, env, fragment):
    with pytest.raises(settings_mod.SettingsError, match=fragment):
        settings_mod.load(environ={"LESSONCAST_DATA_DIR": str(tmp_path), **env})


def test_bad_config_file_is_refused_clearly(tmp_path):
    (tmp_path / "lessoncast.toml").write_text("port = \n")
    with pytest.raises(settings_mod.SettingsError, match="not valid TOML"):
        settings_mod.load(environ={"LESSONCAST_DATA_DIR": str(tmp_path)})
    (tmp_path / "lessoncast.toml").write_text("prot = 1\n")
    with pytest.raises(settings_mod.SettingsError, match="unknown settings prot"):
        settings_mod.load(environ={"LESSONCAST_DATA_DIR": str(tmp_path)})


def test_secrets_are_masked(tmp_path):
    s = settings_mod.load(environ={"LESSONCAST_DATA_DIR": str(tmp_path),
                                   "LESSONCAST_MQTT_URL": "mqtt://svc:hunter2@broker:1883",
                                   "LESSONCAST_SECRET_KEY": "abc"})
    rows = {name: value for name, value, _ in s.masked()}
    assert "hunter2" not in rows["LESSONCAST_MQTT_URL"] and "svc" in rows["LESSONCAST_MQTT_URL"]
    assert rows["LESSONCAST_SECRET_KEY"] == "********"


def test_every_setting_is_documented():
    doc = (ROOT / "docs" / "OPERATIONS.md").read_text(encoding="utf-8")
    missing = [s.env for s in settings_mod.SETTINGS if s.env not in doc]
    assert not missing, f"docs/OPERATIONS.md does not describe {missing}"
