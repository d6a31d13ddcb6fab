"""Browser tests of the staff console: Debian's chromium driven by Playwright, against the real app on a free port,
a worker thread running the real transcoding jobs, and axe-core (from npm) checking every page."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from server.accounts.auth import hash_password
from server.accounts.models import User

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "docs" / "screenshots"
PASSWORD = "correct-horse-9"


@pytest.fixture(scope="session")
def browser():
    """One headless chromium for the session (Debian's, never a downloaded one)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: run `make deps` (it installs the chromium package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-extensions", "--disable-sync", "--no-first-run", "--mute-audio",
            "--autoplay-policy=no-user-gesture-required"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser context at 1366×768, Chinese first (as on a county office PC)."""
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    context.set_default_timeout(20_000)
    yield context.new_page()
    context.close()


@pytest.fixture
def staff(services):
    """Make a staff account: staff('mo', 'media') -> username; password is PASSWORD."""

    def make(username: str, role: str, township: str | None = None) -> str:
        with services.db.session() as session:
            session.add(User(username=username, password_hash=hash_password(PASSWORD), role=role,
                             township=township, created_at=services.clock()))
        return username

    return make


@pytest.fixture
def worker(services):
    """A worker thread running every queued job with the real runner (real ffmpeg), until the test ends."""
    from server.jobs.models import Job
    from server.jobs.runner import run_job

    stop = threading.Event()

    def loop():
        while not stop.is_set():
            with services.db.session() as session:
                ids = session.scalars(select(Job.id).where(Job.state == "queued").order_by(Job.id)).all()
            for job_id in ids:
                run_job(services, job_id)
            stop.wait(0.2)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(60)


def sign_in(page, base: str, username: str, password: str = PASSWORD) -> None:
    """Sign in through the form, and wait until the page it leads to has loaded."""
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("load")


def check_axe(page) -> None:
    """No serious or critical axe-core violation on the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;0")
    violations = page.evaluate("""async () => (await axe.run(document,
            {runOnly: ['wcag2a', 'wcag2aa', 'best-practice']}))
        .violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
        .map(v => v.id + ': ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '))""")
    assert not violations, f"{page.url}: {violations}"


def poll(predicate, timeout: float, what: str):
    """Wait for PREDICATE to be truthy, up to TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
