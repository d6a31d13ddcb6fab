"""A township operator's week in the console's fleet pages: sign in, add 20 radios from a CSV (a bad row shown
first, nothing stored), print their QR labels, enrol two simulated agents (`lessoncast agent enrol` and `agent run
--hal sim`), one from the code decoded from the label's image, see them turn online in the devices table without a
reload, cut one off and see it listed offline, send a resync and see the agent's answer. Another township's
devices stay out of reach, a viewer cannot act, and axe-core finds nothing serious on any page."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from sqlalchemy import select

from server.devices import registry as devices
from server.devices.models import Device
from server.events.models import DeviceEvent
from tests.conftest import free_port, make_services
from tests.console.conftest import SCREENSHOTS, check_axe, poll, sign_in
from tests.console.png_pixels import grey
from tests.e2e.agent_harness import start_ingest
from tests.e2e.stack import VENV_BIN

SILENT_AFTER = 6  # seconds without a status before the table says offline; the agents report every second


@pytest.fixture
def services(tmp_path, database_url):
    """The instance, with a short silence before a device counts as offline."""
    svc = make_services(tmp_path / "data", port=free_port(), mqtt_port=free_port(), mqtt_server_port=free_port(),
                        database_url=database_url, device_silent_after=str(SILENT_AFTER))
    yield svc
    svc.db.dispose()


def _env(store_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LESSONCAST_")}
    env.update({"LESSONCAST_AGENT_DIR": str(store_dir), "LESSONCAST_AGENT_TEST_FAST": "1",
                "LESSONCAST_AGENT_TICK": "0.2", "LESSONCAST_AGENT_PROGRESS": "1"})
    return env


def _enrol(store_dir, *args) -> str:
    done = subprocess.run([str(VENV_BIN / "lessoncast"), "agent", "enrol", "--hal", "sim", *args],
                          env=_env(store_dir), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _run(store_dir, log):
    return subprocess.Popen([str(VENV_BIN / "lessoncast"), "agent", "run", "--hal", "sim"], env=_env(store_dir),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _decode(png: bytes) -> str:
    import zxingcpp

    pixels, width, height = grey(png)
    found = zxingcpp.read_barcodes(memoryview(pixels).cast("B", (height, width)))
    assert found, "no QR code found in the label's image"
    return found[0].text


def _csrf(page) -> str:
    return page.evaluate("JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRFToken']")


def _row_states(page, uid: str) -> str:
    row = page.locator(f"#fleet tr[data-uid='{uid}']")
    return row.get_attribute("data-states") or "" if row.count() else ""


def test_township_operators_week(broker, org, live_server, staff, page, browser, tmp_path):
    services = org
    staff("op", "operator", "qs")
    staff("watcher", "viewer")
    with services.db.session() as session:  # a device of the other township, for the scope checks
        other = devices.add(services, session, kind="radio", name="渔港一号", site_code="hw-01", actor="test").uid
    ingest = start_ingest(services)
    agents, log = [], open(tmp_path / "agents.log", "wb")
    try:
        # 1. sign in: the home page lists the fleet's alerts
        sign_in(page, live_server, "op")
        page.locator("#fleet-alerts").wait_for()
        check_axe(page)

        # 4. 20 radios from a CSV: a row of another township is shown first, and nothing is stored
        page.click("nav >> a[href='/devices']")
        page.wait_for_url(re.compile(r"/devices$"))
        check_axe(page)
        page.click("main a[href='/devices/new']")
        check_axe(page)
        rows = [f"radio,{('东村', '西村')[i % 2]}收音机{i:02d},qs-0{1 + i % 2}" for i in range(1, 21)]
        bad = tmp_path / "radios-bad.csv"
        bad.write_text("kind,name,site\n" + "\n".join(rows[:5] + ["radio,渔港收音机,hw-01"] + rows[5:]) + "\n",
                       encoding="utf-8")
        page.set_input_files("#csv-file", str(bad))
        page.click("#preview")
        assert "7" == page.locator("table.row-errors tbody th").inner_text().strip()  # its line in the file
        assert "hw-01" in page.locator("table.row-errors").inner_text()
        check_axe(page)
        with services.db.session() as session:
            assert session.scalar(select(Device.id).where(Device.name.like("%收音机%"))) is None
        good = tmp_path / "radios.csv"
        good.write_text("kind,name,site\n" + "\n".join(rows) + "\n", encoding="gbk")
        page.click("main a[href='/devices/new']")
        page.set_input_files("#csv-file", str(good))
        page.click("#preview")
        page.locator("#import-ok").wait_for()
        assert page.locator("table.preview tbody tr").count() == 20
        check_axe(page)
        page.click("#import")
        labels = page.locator("article.label")
        labels.first.wait_for()
        assert labels.count() == 20
        check_axe(page)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.emulate_media(media="print")
        page.screenshot(path=str(SCREENSHOTS / "labels.png"), full_page=True)
        page.emulate_media(media="screen")

        # 5. two agents: the first from the code decoded from its label's image, the second from the typed code
        first, second = labels.nth(0), labels.nth(1)
        uids = [first.get_attribute("data-uid"), second.get_attribute("data-uid")]
        (tmp_path / "label.png").write_bytes(first.screenshot())
        payload = _decode((tmp_path / "label.png").read_bytes())
        assert payload.startswith("lessoncast:enrol?") and first.get_attribute("data-code") in payload
        typed = second.locator(".code").inner_text().strip()
        for uid in uids:  # test set-up: report every second and sync at once (no download window)
            devices.update(services, uid, {"settings": {"report_interval": 1, "download_window": None}}, "test")
        assert "Enrolled as " + uids[0] in _enrol(tmp_path / "a1", "--code", payload)
        assert "Enrolled as " + uids[1] in _enrol(tmp_path / "a2", "--server", live_server, "--code", typed)
        agents = [_run(tmp_path / "a1", log), _run(tmp_path / "a2", log)]

        # 6. they turn online in the devices table, which updates itself (no reload)
        page.goto(f"{live_server}/devices?sort=-seen")
        page.evaluate("window.__no_reload = 'still here'")
        poll(lambda: all("online" in _row_states(page, uid).split() for uid in uids), 90, "both agents online")
        assert page.evaluate("window.__no_reload") == "still here"
        assert int(page.locator("#fleet a[data-state='online'] b").inner_text()) == 2
        check_axe(page)
        page.screenshot(path=str(SCREENSHOTS / "devices.png"), full_page=True)

        # 7. one agent is cut off: the table lists it offline once it has been silent too long
        agents[1].terminate()
        agents[1].wait(20)
        poll(lambda: "offline" in _row_states(page, uids[1]).split(), 60, "the stopped agent listed offline")
        assert page.evaluate("window.__no_reload") == "still here"
        page.click("#fleet a[data-state='offline']")
        assert page.locator(f"#fleet tr[data-uid='{uids[1]}']").count() == 1

        # 8. a resync from the table arrives at the agent: its answer shows on the device page
        page.goto(f"{live_server}/devices?sort=-seen")
        page.check(f"#sel-{uids[0]}")
        page.click("#bulk button[value='resync']")
        assert uids[0] in page.locator(".flash.ok").inner_text()

        def resync_done():
            with services.db.session() as session:
                bodies = session.scalars(select(DeviceEvent.body).where(DeviceEvent.device_uid == uids[0],
                                                                        DeviceEvent.type == "command")).all()
            return any(b.get("name") == "resync" and b.get("result") == "done" for b in bodies)

        poll(resync_done, 60, "the agent's answer to the resync")
        page.goto(f"{live_server}/devices/{uids[0]}")
        events = page.locator("table.events")  # in Chinese, the agent's machine words kept for support staff
        assert "重新同步" in events.inner_text() and "已开始同步" in events.inner_text()
        assert events.locator("[data-value='resync']").count() >= 1
        poll(lambda: page.reload() or page.locator("#status-chart svg").count() > 0, 30, "the status chart")
        check_axe(page)
        page.screenshot(path=str(SCREENSHOTS / "device.png"), full_page=True)

        # another township's device: refused by link and by typed URL, and its actions too
        for url in (f"/devices/{other}", "/devices?township=hw", "/devices/live?township=hw"):
            response = page.goto(live_server + url)
            assert response.status in (403, 404), (url, response.status)
        csrf = _csrf(page)
        refused = page.request.post(f"{live_server}/devices/{other}/command", form={"type": "resync"},
                                    headers={"X-CSRFToken": csrf})
        assert refused.status == 403
        refused = page.request.post(f"{live_server}/devices/bulk", form={"action": "resync", "uid": other},
                                    headers={"X-CSRFToken": csrf})
        assert refused.status == 403
        with services.db.session() as session:
            assert not session.scalars(select(DeviceEvent).where(DeviceEvent.device_uid == other)).all()

        # a viewer sees the fleet but cannot act on it
        viewer = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN").new_page()
        sign_in(viewer, live_server, "watcher")
        viewer.goto(f"{live_server}/devices")
        assert viewer.locator(f"#fleet tr[data-uid='{uids[0]}']").count() == 1
        assert viewer.locator("#bulk").count() == 0 and viewer.locator("input[name=uid]").count() == 0
        viewer.goto(f"{live_server}/devices/{uids[0]}")
        assert viewer.locator("#resync").count() == 0
        csrf = _csrf(viewer)
        assert viewer.request.post(f"{live_server}/devices/bulk", form={"action": "resync", "uid": uids[0]},
                                   headers={"X-CSRFToken": csrf}).status == 403
        viewer.context.close()
    finally:
        for agent in agents:
            agent.terminate()
            agent.wait(20)
        log.close()
        ingest.stop()
