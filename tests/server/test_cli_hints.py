"""What a newcomer reads from the server commands: the command to use instead of an HTTP route, quiet logs."""

from __future__ import annotations

from click.testing import CliRunner

from lessoncast.cli import main
from server import settings as settings_mod


def _env(services) -> dict[str, str]:
    return {"LESSONCAST_DATA_DIR": str(services.data), "LANG": "en_US.UTF-8"}


def test_adding_to_a_published_programme_names_the_command_that_makes_a_new_version(services):
    from server.programmes import service as programmes
    from server.programmes.models import Programme

    pid = programmes.create(services, {"code": "2026-Q4", "title": "四季度", "valid_from": "2026-10-01",
                                       "valid_until": "2026-12-31"}, "test")
    with services.db.session() as session:
        session.get(Programme, pid).state = "published"
    refused = CliRunner().invoke(main, ["programme", "add", "2026-Q4", "7"], env=_env(services))
    assert refused.exit_code == 1
    assert "lessoncast programme new-version 2026-Q4" in refused.output, refused.output
    assert "POST" not in refused.output and "/new-version" not in refused.output


def test_the_access_log_is_off_unless_asked_for(tmp_path):
    from server.cli.stack import _web_argv

    quiet = settings_mod.load(environ={"LESSONCAST_DATA_DIR": str(tmp_path)})
    assert "--access-logfile" not in _web_argv(quiet)
    loud = settings_mod.load(environ={"LESSONCAST_DATA_DIR": str(tmp_path), "LESSONCAST_ACCESS_LOG": "true"})
    assert "--access-logfile" in _web_argv(loud)


def test_sizes_read_back_as_written():
    assert settings_mod.human_size(4 * 1024**3) == "4 GiB"
    assert settings_mod.human_size(512 * 1024) == "512 KiB"
    assert settings_mod.human_size(1000) == "1000 B"
    for text in ("4 GiB", "4G", "4GB", "4294967296"):
        assert settings_mod.BY_NAME["max_upload_size"].parse(text) == 4 * 1024**3
