"""Admins roll out an agent release from the console: the releases and rollouts page, a new rollout from the form,
each stage's counts refreshed live as devices report, an action confirmed first; anyone else is refused (403) by a
typed URL and on a write."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from server.agent_releases import releases, rollouts
from server.agent_releases.models import RolloutStage
from server.events.ingest import store_status
from server.programmes import trust
from tests.attendance_data import build_county
from tests.console.conftest import SCREENSHOTS, check_axe, poll, sign_in
from tests.server.test_agent_rollouts import fake_wheel


@pytest.fixture
def county(services, tmp_path):
    """Two townships of one site with two radios each, and agent releases 0.9.1 and 0.9.2 signed as targets."""
    if not trust.initialised(services):
        trust.create_keys(services, "test passphrase")
    build_county(services, townships=2, sites_per_township=1, members_per_site=2, radios_per_site=2, lessons=1)
    deps = tmp_path / "deps"
    deps.mkdir()
    fake_wheel(deps, "paho_mqtt", "2.1.0")
    for version in ("0.9.1", "0.9.2"):
        releases.add(services, fake_wheel(tmp_path, "lessoncast", version), deps, "test")


def _cell(page, stage: int, what: str) -> str:
    return page.inner_text(f"#rollout-live tr[data-stage='{stage}'] td[data-count='{what}']")


def test_an_admin_creates_a_rollout_and_watches_its_stages_live(services, county, live_server, staff, page):
    staff("root", "admin")
    sign_in(page, live_server, "root")
    page.click("nav a[href='/admin/rollouts']")
    check_axe(page)
    assert "0.9.2" in page.inner_text("main table.list")
    page.select_option("#release", "0.9.2")
    page.select_option("#kind-0", "devices")
    page.fill("#count-0", "2")
    page.select_option("#kind-1", "township")
    page.select_option("#township-1", "t01")
    page.fill("#success_pct-1", "50")
    page.uncheck("input[name=auto_advance]")
    page.click("form.rollout-new button[type=submit]")
    assert re.search(r"/admin/rollouts/\d+$", page.url)
    check_axe(page)
    assert [_cell(page, 1, w) for w in ("devices", "succeeded", "failed", "pending")] == ["2", "0", "0", "2"]
    assert _cell(page, 2, "devices") == "0"
    with services.db.session() as session:
        first = session.scalars(select(RolloutStage).where(RolloutStage.position == 0)).one().devices
    # one device of stage 1 reports the new version healthy, another that it failed: the page updates by itself
    now = datetime.now(timezone.utc)
    store_status(services, first[0], json.dumps({"online": True, "agent_version": "0.9.2"}).encode(), now)
    poll(lambda: _cell(page, 1, "succeeded") == "1", 20, "the succeeded count to refresh")
    assert _cell(page, 1, "pending") == "1"
    page.screenshot(path=str(SCREENSHOTS / "rollouts.png"), full_page=True)
    # an action asks first, then goes through the service
    page.click("#rollout-live form[action$='/pause'] button")
    assert page.locator("#confirm-action").count() == 1
    page.click("#confirm-action")
    poll(lambda: page.locator("[data-state=paused]").count() == 1, 20, "the paused state")
    check_axe(page)
    page.click("#rollout-live form[action$='/resume'] button")
    page.click("#confirm-action")
    poll(lambda: page.locator("[data-state=running]").count() == 1, 20, "the running state")
    # the second device succeeds: stage 1 passes, and this manual rollout waits for an admin to start stage 2
    store_status(services, first[1], json.dumps({"online": True, "agent_version": "0.9.2"}).encode(), now)
    rollouts.evaluate(services)  # what the ingest does when a device in the rollout reports
    poll(lambda: page.locator("[data-state=waiting]").count() == 1, 20, "the waiting state")
    page.click("#rollout-live form[action$='/resume'] button")
    assert "开始下一阶段" in page.inner_text("#confirm-action")
    page.click("#confirm-action")
    poll(lambda: _cell(page, 2, "devices") != "0", 20, "stage 2's devices")
    with services.db.session() as session:
        second = session.scalars(select(RolloutStage).where(RolloutStage.position == 1)).one().devices
    assert second and not set(second) & set(first), "stage 2 takes the township's devices not already updated"
    assert _cell(page, 2, "devices") == _cell(page, 2, "pending") == str(len(second))
    assert page.locator("[data-state=running]").count() == 1
    # the list shows the rollout with its counts
    page.goto(f"{live_server}/admin/rollouts")
    assert page.locator("section.rollout tr[data-stage='1'] td[data-count='succeeded']").inner_text() == "2"


def test_only_admins_reach_the_rollout_pages(services, county, live_server, staff, page):
    staff("op", "operator", "t00")
    staff("mo", "media")
    for user in ("op", "mo"):
        sign_in(page, live_server, user)
        assert page.locator("nav a[href='/admin/rollouts']").count() == 0
        assert page.goto(f"{live_server}/admin/rollouts").status == 403
        check_axe(page)
        token = json.loads(page.get_attribute("body", "hx-headers"))["X-CSRFToken"]
        form = {"csrf_token": token, "release": "0.9.2", "kind-0": "county"}
        assert page.request.post(f"{live_server}/admin/rollouts", form=form).status == 403
        assert page.request.post(f"{live_server}/admin/rollouts/1/cancel",
                                 form={"csrf_token": token, "confirm": "yes"}).status == 403
        page.context.clear_cookies()
    with services.db.session() as session:
        assert session.scalar(select(RolloutStage.id)) is None


def test_the_form_is_refused_with_the_services_words(services, county, live_server, staff, page):
    staff("root", "admin")
    sign_in(page, live_server, "root")
    page.goto(f"{live_server}/admin/rollouts")
    page.select_option("#kind-0", "devices")
    page.fill("#count-0", "lots")
    page.click("form.rollout-new button[type=submit]")
    assert page.locator("[data-code=bad_rollout]").count() == 1
    assert "stages[0].count" in page.inner_text("[data-code=bad_rollout]")
    page.goto(f"{live_server}/admin/rollouts")
    page.click("form.rollout-new button[type=submit]")  # no stage at all
    assert "stages" in page.inner_text("[data-code=bad_rollout]")
    token = json.loads(page.get_attribute("body", "hx-headers"))["X-CSRFToken"]
    assert page.request.post(f"{live_server}/admin/rollouts/99/explode", form={"csrf_token": token}).status == 422
    assert page.request.post(f"{live_server}/admin/rollouts/99/pause",
                             form={"csrf_token": token, "confirm": "yes"}).status == 404


def test_the_form_takes_up_to_the_services_stages_from_the_keyboard(services, county, live_server, staff, page):
    """The form shows three stage rows. "Add a stage" (a button the keyboard reaches) shows one more each time, with
    the focus on its group, up to the most the service takes; a stage in an added row reaches the service."""
    staff("root", "admin")
    sign_in(page, live_server, "root")
    page.goto(f"{live_server}/admin/rollouts")
    visible = page.locator("#stage-rows tr:visible")
    assert visible.count() == 3
    for n in range(4, rollouts.MAX_STAGES + 1):
        page.focus("#add-stage")
        page.keyboard.press("Enter")
        poll(lambda: visible.count() == n, 10, f"stage row {n}")
        assert page.evaluate("document.activeElement.id") == f"kind-{n - 1}"
    assert page.locator("#add-stage").is_disabled()
    assert str(rollouts.MAX_STAGES) in page.inner_text("#stage-limit")
    check_axe(page)
    page.select_option("#release", "0.9.2")
    page.select_option("#kind-0", "devices")
    page.fill("#count-0", "1")
    page.select_option(f"#kind-{rollouts.MAX_STAGES - 1}", "county")
    page.click("form.rollout-new button[type=submit]")
    assert re.search(r"/admin/rollouts/\d+$", page.url)
    with services.db.session() as session:
        stages = session.scalars(select(RolloutStage).order_by(RolloutStage.position)).all()
    assert [(s.position, s.kind) for s in stages] == [(0, "devices"), (1, "county")]
