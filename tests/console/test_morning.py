"""A new media officer's morning in the console: sign in, upload two lessons at once and watch every bar reach 100%,
play a rendition, build a programme with an optional lesson and two slots, preview, publish, and see an enrolled
agent (`lessoncast agent run --hal sim`) report the new version on the publish page."""

from __future__ import annotations

import os
import re
import subprocess

from tests.console.conftest import SCREENSHOTS, check_axe, poll, sign_in
from tests.e2e.agent_harness import add_and_enrol, start_ingest
from tests.e2e.stack import VENV_BIN
from tests.generated_media import speech_like


def _agent(store_dir, log):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LESSONCAST_")}
    env.update({"LESSONCAST_AGENT_DIR": str(store_dir), "LESSONCAST_AGENT_TEST_FAST": "1",
                "LESSONCAST_AGENT_TICK": "0.2", "LESSONCAST_AGENT_PROGRESS": "1"})
    return subprocess.Popen([str(VENV_BIN / "lessoncast"), "agent", "run", "--hal", "sim"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def test_media_officers_morning(broker, org, live_server, worker, staff, page, tmp_path):
    services = org
    staff("mo", "media")
    ingest = start_ingest(services)
    store = add_and_enrol(services, live_server, tmp_path / "radio")
    log = open(tmp_path / "agent.log", "wb")
    agent = _agent(store.root, log)
    try:
        # 1. sign in
        sign_in(page, live_server, "mo")
        assert page.locator("html").get_attribute("lang") == "zh-CN"
        check_axe(page)

        # 2. two lessons at once: both upload bars and every transcoding bar reach 100 %
        files = [speech_like(tmp_path / "第一课.wav", seconds=3.0), speech_like(tmp_path / "第二课.wav", seconds=4.0)]
        page.click("text=上传")
        page.wait_for_selector("#drop")
        page.fill("#speaker", "王书记")
        page.fill("#series", "党史学习")
        page.set_input_files("#files", [str(f) for f in files])
        assert page.locator("tr.file").count() == 2
        check_axe(page)
        page.click("#start")
        poll(lambda: page.locator("tr.file progress.upload[value='100']").count() == 2, 60, "both upload bars")
        poll(lambda: page.locator("tr.file .renditions[data-state='ready']").count() == 2, 120,
             "both lessons transcoded")
        bars = page.locator("tr.file progress.transcode")
        assert bars.count() >= 2
        assert all(float(bars.nth(i).get_attribute("value")) == 100.0 for i in range(bars.count()))
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "upload.png"))

        # 3. play one rendition in the page
        page.click("tr.file >> text=打开课程")
        audio = page.locator("audio").first
        audio.wait_for()
        check_axe(page)
        page.evaluate("document.querySelector('audio').play()")
        poll(lambda: page.evaluate("document.querySelector('audio').currentTime") > 0.2, 20, "the rendition plays")
        assert "LUFS" in page.content() and "dBTP" in page.content()

        page.goto(f"{live_server}/lessons")
        assert page.locator("table.list tbody tr").count() == 2
        check_axe(page)
        page.screenshot(path=str(SCREENSHOTS / "library.png"))

        # 4. a programme with both lessons, the second optional, a 07:00 broadcast and a 19:30 class
        page.click("nav >> text=节目")
        check_axe(page)
        page.fill("#code", "2026-Q4")
        page.fill("#title", "第四季度党课")
        page.click("text=创建节目")
        for title in ("第一课", "第二课"):
            value = page.locator("#add-lesson option", has_text=title).get_attribute("value")
            page.select_option("#add-lesson", value)
            with page.expect_navigation():  # each form posts and the page comes back: count on the page after it
                page.click("form.add >> button:has-text('添加')")
        assert page.locator("table.items tbody tr").count() == 2
        page.select_option("#m-2", "0")
        with page.expect_navigation():
            page.locator("table.items tbody tr").nth(1).locator("button:has-text('保存')").click()
        for time_, kind in (("07:00", "broadcast"), ("19:30", "class")):
            page.fill("#slot-time", time_)
            page.select_option("#slot-kind", kind)
            with page.expect_navigation():
                page.click("text=添加时段")
        assert page.locator("#m-2").input_value() == "0"
        assert [t.inner_text() for t in page.locator("tr.slot td:first-child").all()] == ["07:00", "19:30"]
        check_axe(page)

        # 5. preview and publish, confirming the number of devices
        page.click("text=预览并发布")
        button = page.locator("#publish")
        button.wait_for()
        assert re.search(r"1\s*台设备", button.inner_text()), button.inner_text()
        # the preview says when the device will fetch it (its download window, or at once)
        assert re.search(r"1\s*台设备.*(下载时段|立即下载)", page.locator("#downloads").inner_text())
        check_axe(page)
        page.screenshot(path=str(SCREENSHOTS / "publish-preview.png"))
        button.click()

        # 6. the enrolled agent reports the new version on the publish page
        page.wait_for_url(re.compile(r"/live$"))
        poll(lambda: page.locator("#sync .summary[data-synced='1'][data-total='1']").count() == 1, 90,
             "the agent reporting the new version")
        check_axe(page)

        # supersede: a new version of the published programme is a draft to edit
        page.click("text=返回节目")
        page.click("text=制作新版本")
        assert "2026-Q4 v2" in page.inner_text("h1") and page.locator("#add-lesson").count() == 1
    finally:
        agent.terminate()
        agent.wait(20)
        log.close()
        ingest.stop()
