"""The console's smaller lesson and programme actions, in the browser: a refused upload shows the API's own message
next to its file, a failed rendition is retried from the lesson page, and a programme's lessons are added and
reordered."""

from __future__ import annotations

import hashlib

from sqlalchemy import select

from server.i18n import translator
from server.jobs.models import Job
from server.lessons.models import Lesson, Rendition, SourceFile, Upload
from tests.console.conftest import check_axe, poll, sign_in


def _lesson(services, title: str, state: str = "ready") -> int:
    """A lesson with one radio rendition in STATE (and, when failed, its failed render job); returns its id."""
    now = services.clock()
    sha = hashlib.sha256(title.encode()).hexdigest()
    with services.db.session() as session:
        lesson = Lesson(title=title, speaker="王书记", series="党史学习", language="cmn", description="", state=state,
                        created_by="test", created_at=now, updated_at=now,
                        source=SourceFile(sha256=sha, original_name=f"{title}.wav", extension="wav", size_bytes=1000,
                                          probe={"duration_s": 3.0}, created_at=now))
        error = {"code": "ffmpeg_failed", "message": "ffmpeg stopped"} if state == "failed" else None
        rendition = Rendition(profile="radio", state=state, progress=1.0 if state == "ready" else 0.4, extension="mp3",
                              sha256=hashlib.sha256(sha.encode()).hexdigest() if state == "ready" else None,
                              size_bytes=500 if state == "ready" else None, duration_s=3.0, error=error,
                              updated_at=now)
        lesson.renditions.append(rendition)
        session.add(lesson)
        session.flush()
        if state == "failed":
            session.add(Job(kind="render", lesson_id=lesson.id, rendition_id=rendition.id, state="failed",
                            attempts=3, progress=0.4, enqueued_at=now, error=error))
        return lesson.id


def test_a_refused_file_shows_the_apis_message_next_to_it(org, live_server, staff, page, tmp_path):
    staff("mo", "media")
    fake = tmp_path / "讲话.mp3"
    fake.write_text("这不是音频文件，只是改了扩展名的文本。\n" * 20, encoding="utf-8")
    sign_in(page, live_server, "mo")
    page.goto(f"{live_server}/lessons/upload")
    page.set_input_files("#files", [str(fake)])
    page.click("#start")
    row = page.locator("tr.file.refused")
    row.wait_for()
    with org.db.session() as session:
        error = poll(lambda: session.scalar(select(Upload.error).where(Upload.filename == fake.name)), 20,
                     "the refusal recorded on the upload")
    # The page shows the API's refusal in the page's language (zh_CN): the recorded English text, translated.
    template = "{display_name}: this is a text file, not audio or video; upload the recording itself"
    assert error["message"] == template.format(display_name=fake.name)
    assert translator("zh_CN")(template).format(display_name=fake.name) in row.locator(".msg").inner_text()
    assert "讲话.mp3" in row.locator(".name").inner_text()
    check_axe(page)
    with org.db.session() as session:  # nothing was stored as a lesson
        assert session.scalar(select(Lesson.id)) is None


def test_a_failed_rendition_is_retried_and_lessons_are_added_to_a_programme_and_reordered(org, live_server, staff,
                                                                                         page):
    staff("mo", "media")
    failed, first, second = _lesson(org, "第三课", state="failed"), _lesson(org, "第一课"), _lesson(org, "第二课")
    sign_in(page, live_server, "mo")
    # retry the failed rendition from the lesson page (the pages' axe checks are in test_morning)
    page.goto(f"{live_server}/lessons/{failed}")
    assert "ffmpeg stopped" in page.inner_text("main")
    page.click("text=重试失败的版本")
    assert page.locator(".flash").count() == 1
    assert page.locator("text=重试失败的版本").count() == 0  # nothing has failed any more
    with org.db.session() as session:
        assert session.scalar(select(Rendition.state).where(Rendition.lesson_id == failed)) == "queued"
        assert session.scalar(select(Job.state).where(Job.lesson_id == failed)) == "queued"
        assert session.get(Lesson, failed).state == "processing"
    # a programme: add two lessons from the library, move the first down, then back up
    page.goto(f"{live_server}/programmes")
    page.fill("#code", "2026-Q4")
    page.fill("#title", "第四季度党课")
    page.click("text=创建节目")
    for lesson_id in (first, second):
        page.select_option("#add-lesson", str(lesson_id))
        page.click("form.add >> button:has-text('添加')")
    rows = page.locator("table.items tbody tr[data-lesson]")

    def order() -> list[str]:
        return [rows.nth(i).get_attribute("data-lesson") for i in range(rows.count())]

    assert order() == [str(first), str(second)]
    page.click("button[aria-label='下移 1']")
    assert order() == [str(second), str(first)]
    page.click("button[aria-label='上移 2']")
    assert order() == [str(first), str(second)]
