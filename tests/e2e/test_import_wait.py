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


def test_import_wait_waits_for_the_worker_that_run_just_started(tmp_path):
    """Right after 'lessoncast run' starts, its worker has not beaten yet: an import --wait then waits for it (and
    says so) instead of telling the user to start what they just started. The run here is the run lock held by this
    test, as 'lessoncast run' holds it, and the worker starts only after the import is waiting."""
    from server.run_lock import RunLock

    data = tmp_path / "data"
    env = {**stack_env(data), "LANG": "en_US.UTF-8"}
    stick = tmp_path / "usb"
    stick.mkdir()
    tone(stick / "第一讲.mp3", 2)
    subprocess.run([str(VENV_BIN / "lessoncast"), "init"], env=env, check=True, capture_output=True)
    lock = RunLock(data).acquire()
    worker = None
    try:
        importing = subprocess.Popen([str(VENV_BIN / "lessoncast"), "import", str(stick), "--wait"], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        waiting = importing.stderr.readline()
        assert "Waiting up to 60 s for the worker that 'lessoncast run' started" in waiting, waiting
        worker = start(["worker"], env, tmp_path / "worker.log")
        out, err = importing.communicate(timeout=180)
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
        lock.release()
    assert importing.returncode == 0, out + err
    assert "1 imported" in out and "第一讲: ready" in out
