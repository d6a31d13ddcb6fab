"""The fleet pages' machine words in Chinese (server.console.fleet_words): each vocabulary as a table of cases, the
rollout reasons exactly as the rollout service writes them, and the rollouts page showing them to an admin."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask_babel import force_locale

from server.agent_releases import rollouts
from server.console.fleet_words import VOCABULARIES, rollout_reason, word, word_span
from tests.console.test_fleet_pages import _signed_in
from tests.server.test_agent_rollouts import NOW, county, report  # noqa: F401 (county is a fixture)

LATIN = re.compile(r"[A-Za-z]")


@pytest.mark.parametrize("vocabulary, value, chinese", [
    ("sync_state", "idle", "已同步，空闲"), ("sync_state", "checking", "正在检查更新"),
    ("sync_state", "downloading", "正在下载"), ("sync_state", "deferred", "推迟（等待下载时段）"),
    ("sync_state", "error", "同步出错"), ("sync_state", "failed", "同步失败"),
    ("device_state", "offline_long", "长期离线"), ("device_state", "pending", "待注册"),
    ("event_type", "command", "远程命令"), ("event_type", "checkin", "签到"),
    ("command", "resync", "重新同步"), ("command", "reboot", "重启"),
    ("command_result", "done", "已完成"), ("command_result", "failed", "失败"),
    ("command_message", "sync started", "已开始同步"), ("command_message", "stopped", "已停止播放"),
    ("command_message", "playing 第一课", "正在播放 第一课"), ("command_message", "volume 40", "音量已设为 40"),
    ("update_result", "rolled_back", "已回退"), ("error_code", "sync_failed", "同步失败"),
    ("sync_reason", "outside the download window", "不在下载时段内，等待下载时段"),
    ("sync_reason", "network: timed out", "网络问题：timed out"),
    ("rollout_state", "running", "进行中"), ("rollout_reason", "paused by root", "由 root 暂停"),
])
def test_each_known_word_is_said_in_chinese(app, vocabulary, value, chinese):
    with app.test_request_context(), force_locale("zh_CN"):
        assert word(vocabulary, value) == chinese


@pytest.mark.parametrize("vocabulary", sorted(VOCABULARIES))
def test_an_unknown_word_is_shown_as_it_came(app, vocabulary):
    """A newer agent's word (or a free text) does not break the page: it is shown unchanged; nothing is empty."""
    with app.test_request_context(), force_locale("zh_CN"):
        assert word(vocabulary, "warp-drive engaged") == "warp-drive engaged"
        assert word(vocabulary, None) == "" and word_span(vocabulary, None) == ""
        span = word_span(vocabulary, "<b>")
        assert 'title="&lt;b&gt;"' in span and "<b>" not in span  # the machine word is kept, and escaped


def test_every_reason_the_rollout_service_writes_is_said_in_chinese(services, county, app):  # noqa: F811
    """The reasons come from the service itself (error threshold, waiting for an admin, time limit, paused and
    cancelled by someone), so a change to its wording fails here rather than leaking English onto the page."""
    uids = sorted(uid for uid, _ in county.radios + county.terminals)
    reasons = []
    failing = rollouts.create(services, {"release": "0.9.2", "stages": [
        {"kind": "devices", "count": 2, "success_pct": 100, "error_pct": 10}]}, "admin")
    report(services, uids[0], "0.9.1", {"state": "failed", "version": "0.9.2", "attempt": 1, "reason": "exit 3"})
    rollouts.evaluate(services)
    reasons.append(rollouts.show(services, failing["id"])["reason"])
    reasons.append(rollouts.act(services, failing["id"], "cancel", "root")["reason"])
    manual = rollouts.create(services, {"release": "0.9.2", "auto_advance": False, "stages": [
        {"kind": "devices", "count": 1, "success_pct": 100, "time_limit_min": 30},
        {"kind": "township", "township": "t01", "time_limit_min": 30}]}, "admin")
    report(services, uids[2], "0.9.2", {"state": "healthy", "version": "0.9.2", "attempt": 1})
    rollouts.evaluate(services)
    reasons.append(rollouts.show(services, manual["id"])["reason"])
    rollouts.act(services, manual["id"], "resume", "admin")
    reasons.append(rollouts.act(services, manual["id"], "pause", "root")["reason"])
    rollouts.act(services, manual["id"], "resume", "admin")
    services.clock = lambda: NOW + timedelta(minutes=31)
    rollouts.evaluate(services)
    reasons.append(rollouts.show(services, manual["id"])["reason"])
    assert len(set(reasons)) == 5 and all(reasons), reasons
    with app.test_request_context(), force_locale("zh_CN"):
        said = [rollout_reason(r) for r in reasons]
    untranslated = [(r, s) for r, s in zip(reasons, said) if LATIN.search(s.replace("root", ""))]
    assert not untranslated, untranslated
    assert said[0].startswith("第 1 阶段：") and "错误阈值" in said[0]


def test_the_rollouts_page_shows_a_paused_rollout_in_chinese(services, county, app, staff):  # noqa: F811
    rollout = rollouts.create(services, {"release": "0.9.2", "stages": [{"kind": "county"}]}, "admin")
    rollouts.act(services, rollout["id"], "pause", "root")
    staff("root", "admin")
    client, _csrf = _signed_in(app, "root")
    for url in ("/admin/rollouts", f"/admin/rollouts/{rollout['id']}"):
        page = client.get(url)
        text = re.sub(r"<[^>]+>", " ", page.text)
        assert page.status_code == 200 and "由 root 暂停" in text and "已暂停" in text, url
        assert "paused by" not in text and 'title="paused by root"' in page.text, url
