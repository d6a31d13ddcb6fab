"""Import from a USB-stick folder and wait, with a running worker, until every rendition is made."""

import signal
import subprocess

from server import settings as settings_mod
from server.health.checks import check_worker
from server.services import Services
from tests.e2e.stack import VENV_BIN, stack_env, start, wait_for
from tests.generated_media import tone


def test_import_wait_reports_ready_lessons(tmp_path):
    env = stack_env(tmp_path / "data")
    stick = tmp_path / "usb"
    stick.mkdir()
    tone(stick / "第一讲.mp3", 2)
    tone(stick / "第二讲.wav", 2, frequency=660)
    subprocess.run([str(VENV_BIN / "lessoncast"), "init"], env=env, check=True, capture_output=True)

    without_worker = subprocess.run([str(VENV_BIN / "lessoncast"), "import", str(stick), "--wait"], env=env,
                                    capture_output=True, text=True, timeout=60)
    assert without_worker.returncode == 1 and "No worker is running" in without_worker.stderr

    worker = start(["worker"], env, tmp_path / "worker.log")
    try:
        # "with a running worker": its first heartbeat, not its start, makes it running (a busy machine can take
        # seconds between the two, and the import would rightly say that no worker is running yet)
        services = Services(settings_mod.load(environ={}, overrides={"data_dir": str(tmp_path / "data")}))
        wait_for(lambda: check_worker(services)["up"], 120, "the worker's first heartbeat", tmp_path / "worker.log")
        tone(stick / "第三讲.mp3", 2, frequency=880)
        result = subprocess.run([str(VENV_BIN / "lessoncast"), "import", str(stick), "--wait"], env=env,
                                capture_output=True, text=True, timeout=180)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 imported, 2 already there, 0 refused" in result.stdout
    assert "第三讲: ready" in result.stdout
