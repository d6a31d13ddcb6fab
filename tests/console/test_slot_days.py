"""Slot days in the console, in a real browser: a media officer sets a 07:00 broadcast to Monday–Friday with the
keyboard on labelled 周一…周日 checkboxes, the week view shows it on those days only, days can be changed later, no
day at all is refused with the API's words, and a viewer or an operator sees the days but cannot change them.
axe-core finds no serious or critical violation on the page."""

from __future__ import annotations

import re

import pytest

from server.programmes import service as programmes
from tests.console.conftest import check_axe, sign_in

DAYS_ZH = ["周一", "周二", "周三", "周四", "周五", "周六", "周日"]


def _draft(services) -> int:
    return programmes.create(services, {"code": "2026-Q4", "title": "第四季度党课", "valid_from": "2026-10-01",
                                        "valid_until": "2026-12-31"}, "test")


def week_row(page, time_: str) -> list[str]:
    """The week view's row for TIME: for each day Monday to Sunday, what the cell says ('' when nothing plays)."""
    cells = page.locator(f"table.week tr[data-time='{time_}'] td")
    return [cell.inner_text().strip() if cell.get_attribute("data-plays") == "1" else ""
            for cell in cells.all()]


def test_a_media_officer_sets_a_weekday_broadcast_and_the_week_view_shows_it_on_weekdays(
        org, live_server, staff, page, services):
    pid = _draft(services)
    staff("mo", "media")
    sign_in(page, live_server, "mo")
    page.goto(f"{live_server}/programmes/{pid}")

    # The add form: seven labelled checkboxes, all ticked (a new slot plays every day unless told).
    boxes = page.locator("form.slot-add fieldset.days input[type=checkbox]")
    assert [page.locator(f"label[for='{b.get_attribute('id')}']").inner_text() for b in boxes.all()] == DAYS_ZH
    assert all(b.is_checked() for b in boxes.all())
    assert page.locator("form.slot-add fieldset.days legend").inner_text() == "播放日"
    check_axe(page)

    # The time by fill (Chromium's time field segments depend on the locale); the days and the submit by keyboard:
    # Tab from the kind reaches 周一, then Tab through to 周六 and 周日, untick each with the space bar, Enter adds.
    page.fill("#slot-time", "07:00")
    page.focus("#slot-kind")
    focused = []
    for _ in range(7):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.id"))
        if focused[-1] in ("slot-day-sat", "slot-day-sun"):
            page.keyboard.press("Space")
    assert focused == [f"slot-day-{d}" for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")]
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "添加时段"
    page.keyboard.press("Enter")
    page.wait_for_selector("tr.slot[data-time='07:00']")
    assert week_row(page, "07:00") == ["广播"] * 5 + ["", ""]
    headers = [th.inner_text() for th in page.locator("table.week thead th").all()]
    assert headers == ["时间", *DAYS_ZH]
    check_axe(page)
    with services.db.session() as session:
        assert programmes.get(session, pid).slots[0]["days"] == ["mon", "tue", "wed", "thu", "fri"]

    # An every-day class next to it stays on all seven days.
    page.fill("#slot-time", "19:30")
    page.select_option("#slot-kind", "class")
    page.click("text=添加时段")
    page.wait_for_selector("tr.slot[data-time='19:30']")
    assert week_row(page, "19:30") == ["集中学习"] * 7
    assert week_row(page, "07:00") == ["广播"] * 5 + ["", ""]

    # Later, the broadcast also plays on Saturday: tick it in the slot's row and save.
    row = page.locator("tr.slot[data-time='07:00']")
    row.locator("input[value=sat]").check()
    row.locator("button[value=days]").click()
    page.wait_for_selector("tr.slot[data-time='07:00']")
    assert week_row(page, "07:00") == ["广播"] * 6 + [""]
    check_axe(page)

    # No day at all is refused with the service's own message, and nothing changes.
    row = page.locator("tr.slot[data-time='07:00']")
    for box in row.locator("input[type=checkbox]").all():
        box.uncheck()
    row.locator("button[value=days]").click()
    error = page.locator("p.error")
    assert re.search(r"时段 1：没有选择播放日", error.inner_text()), error.inner_text()
    with services.db.session() as session:
        assert programmes.get(session, pid).slots[0]["days"] == ["mon", "tue", "wed", "thu", "fri", "sat"]


@pytest.mark.parametrize("role, township", [("viewer", None), ("operator", "qs")])
def test_a_viewer_or_operator_sees_the_days_but_cannot_change_them(org, live_server, staff, page, services, role,
                                                                  township):
    pid = _draft(services)
    programmes.update(services, pid, {"slots": [{"time": "07:00", "days": ["mon", "wed", "fri"]}]}, "test")
    staff("someone", role, township)
    sign_in(page, live_server, "someone")
    page.goto(f"{live_server}/programmes/{pid}")
    assert page.locator("input[type=checkbox]").count() == 0  # no form to change anything
    assert page.locator("tr.slot[data-time='07:00'] td").nth(2).inner_text().split() == ["周一", "周三", "周五"]
    assert week_row(page, "07:00") == ["广播", "", "广播", "", "广播", "", ""]
    check_axe(page)
    # The same change posted by hand with a valid CSRF token: the role refuses it, by typed URL as by link.
    token = page.evaluate("document.body.getAttribute('hx-headers')")
    csrf = re.search(r'"X-CSRFToken": "([^"]+)"', token).group(1)
    refused = page.request.post(f"{live_server}/programmes/{pid}/slots",
                                form={"csrf_token": csrf, "action": "days", "position": "1", "days": "sun"})
    assert refused.status == 403
    with services.db.session() as session:
        assert programmes.get(session, pid).slots[0]["days"] == ["mon", "wed", "fri"]
