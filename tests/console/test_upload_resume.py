"""An upload from the console page survives a dropped connection: the browser (tus-js-client) asks the server how
much it holds and sends only the rest. The connection runs through a TCP proxy the test cuts mid-upload."""

from __future__ import annotations

import threading

from server.lessons.models import Upload
from tests.console.conftest import poll, sign_in
from tests.e2e.tcp_proxy import TcpProxy
from tests.generated_media import speech_like

CHUNK = 512 * 1024
CUT_AT = 2 * 1024 * 1024


class PatchLog:
    """WSGI middleware that records each tus PATCH (offset sent, bytes, offset after) and cuts the network once
    the server holds CUT_AT bytes, so the answer to that PATCH never reaches the browser."""

    def __init__(self, app, proxy: TcpProxy):
        self.app, self.proxy = app, proxy
        self.patches: list[dict] = []
        self.cut_at: int | None = None
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        if environ["REQUEST_METHOD"] != "PATCH" or "/api/v1/uploads/" not in environ["PATH_INFO"]:
            return self.app(environ, start_response)
        record = {"offset": int(environ.get("HTTP_UPLOAD_OFFSET", "-1")), "bytes": int(environ["CONTENT_LENGTH"])}

        def started(status, headers, exc_info=None):
            record["status"] = int(status.split()[0])
            record["after"] = int(dict(headers).get("Upload-Offset", "-1"))
            return start_response(status, headers, exc_info)

        body = self.app(environ, started)
        with self.lock:
            self.patches.append(record)
            if self.cut_at is None and record.get("after", 0) >= CUT_AT:
                self.cut_at = record["after"]
                self.proxy.cut()
        return body


def test_an_interrupted_upload_resumes_without_sending_bytes_again(app, services, live_server, staff, page,
                                                                    tmp_path):
    staff("mo", "media")
    audio = speech_like(tmp_path / "长课.wav", seconds=50.0)
    size = audio.stat().st_size
    assert size > 2 * CUT_AT
    proxy = TcpProxy(services.settings.port)
    log = PatchLog(app.wsgi_app, proxy)
    app.wsgi_app = log
    base = f"http://127.0.0.1:{proxy.port}"
    try:
        sign_in(page, base, "mo")
        page.goto(f"{base}/lessons/upload?chunk={CHUNK}")
        page.set_input_files("#files", str(audio))
        page.click("#start")
        poll(lambda: log.cut_at is not None, 60, "the cut")
        with services.db.session() as session:
            held = session.query(Upload).one().offset
        assert held == log.cut_at  # what the server holds at the cut
        poll(lambda: "续传" in page.inner_text("tr.file .msg"), 30, "the page saying it resumes")
        proxy.restore()
        poll(lambda: page.locator("tr.file progress.upload[value='100']").count() == 1, 60, "the upload finishing")
        poll(lambda: page.locator("tr.file[data-lesson]").count() == 1, 10, "the lesson")
    finally:
        proxy.close()
    resumed = [p for p in log.patches if p["offset"] >= log.cut_at]
    # the first PATCH after the cut starts where the server stopped: the bytes before the cut are not sent again
    assert resumed and resumed[0]["offset"] == log.cut_at
    assert sum(p["bytes"] for p in log.patches) == size
    assert [p["offset"] for p in log.patches] == sorted({p["offset"] for p in log.patches})
