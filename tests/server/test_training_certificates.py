"""Training certificates over the real app: issued to the members who completed a programme (the county of
``tests/server/test_reports.py``: only M00000000 completed both mandatory lessons of 2026-Q4), numbered, printed
and reprinted, printed per site in a batch, and verified at the public ``/verify/<code>``, which shows only the
name, programme and date and reveals nothing for a tampered or unknown code."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from lessoncast.cli import main

from server.training.certificates import display_code
from server.training.models import Certificate
from tests.server.test_reports import make_county


@pytest.fixture
def county(services):
    return make_county(services)


def codes(services) -> dict[str, str]:
    with services.db.session() as session:
        return {c.number: c.code for c in session.scalars(select(Certificate))}


def test_issue_print_and_verify_a_certificate_and_refuse_a_wrong_code(client, auth, token, services, county):
    issued = client.post("/api/v1/certificates", json={"programme": "2026-Q4"}, headers=auth("admin"))
    assert issued.status_code == 201, issued.get_json()
    assert issued.get_json() == {"issued": ["2026-000001"]}
    again = client.post("/api/v1/certificates", json={"programme": "2026-Q4"}, headers=auth("admin"))
    assert again.get_json() == {"issued": []}, "a member gets one certificate per programme"
    listed = client.get("/api/v1/certificates?programme=2026-Q4", headers=auth("viewer")).get_json()["certificates"]
    assert [(c["number"], c["member_no"], c["hours"], c["completed_on"]) for c in listed] == [
        ("2026-000001", "M00000000", 0.8, "2026-10-11")]

    page = client.get("/api/v1/certificates/2026-000001/print", headers=auth("viewer"))
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.data.decode()
    code = codes(services)["2026-000001"]
    for expected in ("党员000", "第四季度", "0.8", "2026年10月11日", "2026-000001", display_code(code),
                     f"/verify/{display_code(code)}", "<svg", 'href="/training/print.css"', "培训证书"):
        assert expected in html, expected
    assert "style=" not in html and "<style" not in html and "<script" not in html  # the CSP allows none
    css = client.get("/training/print.css")
    assert css.status_code == 200 and "size: A4" in css.data.decode()
    client.get("/api/v1/certificates/2026-000001/print", headers=auth("viewer"))
    listed = client.get("/api/v1/certificates", headers=auth("viewer")).get_json()["certificates"]
    assert listed[0]["prints"] == 0, "looking at the page (GET, as often as a browser likes) is not printing"
    assert client.post("/api/v1/certificates/2026-000001/print", headers=auth("viewer")).status_code == 403
    for _ in range(2):
        printed = client.post("/api/v1/certificates/2026-000001/print",
                              headers={"Authorization": f"Bearer {token('operator', township='t00')}"})
        assert printed.status_code == 200 and display_code(code) in printed.data.decode()
    assert client.post("/api/v1/certificates/2026-999999/print", headers=auth("admin")).status_code == 404
    listed = client.get("/api/v1/certificates", headers=auth("viewer")).get_json()["certificates"]
    assert listed[0]["prints"] == 2, "a print and a reprint are recorded, each by its POST"

    genuine = client.get(f"/verify/{display_code(code)}")  # no sign-in
    assert genuine.status_code == 200
    text = genuine.data.decode()
    assert "党员000" in text and "第四季度" in text and "2026-10-11" in text
    # nothing else about the member: no member number, site, township, hours, certificate number, code digest
    for secret in ("M00000000", "t00-s00", "村0000", "镇00", "0.8", "2026-000001"):
        assert secret not in text, secret
    assert client.get(f"/verify/{code.lower()}").status_code == 200, "the code is read as printed or typed"
    check_a_tampered_or_unknown_code_reveals_nothing(client, services)


def labels(html: str) -> list[str]:
    return re.findall(r"<dt>(.*?)</dt>", html)


def check_a_tampered_or_unknown_code_reveals_nothing(client, services):
    code = codes(services)["2026-000001"]
    genuine = client.get(f"/verify/{code}").data.decode()
    tampered = code[:-1] + ("A" if code[-1] != "A" else "B")
    for wrong in (tampered, "AAAAAAAAAAAAAAAA", "not-a-code", "x" * 500, "2026-000001", "M00000000"):
        answer = client.get(f"/verify/{wrong}")
        assert answer.status_code == 404, wrong
        body = answer.data.decode()
        assert labels(body) == labels(genuine), "the same shape whatever the code"
        assert "党员000" not in body and "第四季度" not in body and "2026-10-11" not in body
    with services.db.session() as session:
        session.scalar(select(Certificate)).revoked_at = services.clock()
    assert client.get(f"/verify/{code}").status_code == 404, "a revoked certificate is not genuine"


def test_issuing_by_hours_batch_printing_and_scope(client, auth, token, services, county, tmp_path, monkeypatch):
    operator = {"Authorization": f"Bearer {token('operator', township='t01')}"}
    refused = client.post("/api/v1/certificates", json={"programme": "2026-Q4", "site": "t00-s00"}, headers=operator)
    assert refused.status_code == 403
    assert client.post("/api/v1/certificates", json={"programme": "NOPE"}, headers=auth("admin")).status_code == 404
    by_hours = client.post("/api/v1/certificates", json={"programme": "2026-Q4", "site": "t00-s00", "hours": 0.3},
                           headers=auth("admin"))
    assert by_hours.status_code == 201 and len(by_hours.get_json()["issued"]) == 2  # M00000000 (0.8), M00000001 (0.3)
    batch_url = "/api/v1/certificates/print?programme=2026-Q4&site=t00-s00"
    for _ in range(3):  # a preview, reloaded: GET counts nothing
        batch = client.get(batch_url, headers=auth("viewer"))
        assert batch.status_code == 200 and batch.data.decode().count('class="certificate"') == 2
    assert [c["prints"] for c in client.get("/api/v1/certificates", headers=auth("viewer"))
            .get_json()["certificates"]] == [0, 0]
    printed = client.post(batch_url, headers=auth("admin"))
    assert printed.status_code == 200 and printed.data.decode().count('class="certificate"') == 2
    assert [c["prints"] for c in client.get("/api/v1/certificates", headers=auth("viewer"))
            .get_json()["certificates"]] == [1, 1], "printing the batch counts each certificate once"
    assert client.post("/api/v1/certificates/print?programme=2026-Q4", headers=auth("admin")).status_code == 400
    assert client.post(batch_url, headers=operator).status_code == 403
    assert client.get(batch_url.replace("t00-s00", "nowhere"), headers=auth("admin")).status_code == 404
    assert [c["prints"] for c in client.get("/api/v1/certificates", headers=auth("viewer"))
            .get_json()["certificates"]] == [1, 1], "another township's operator prints none of them"
    assert client.get("/api/v1/certificates", headers=operator).get_json() == {"certificates": []}
    number = by_hours.get_json()["issued"][0]
    assert client.get(f"/api/v1/certificates/{number}/print", headers=operator).status_code == 403
    assert client.get("/api/v1/certificates/print?programme=2026-Q4&site=t00-s00",
                      headers=operator).status_code == 403, "another township's site"
    check_the_cli_issues_and_prints(services, tmp_path, monkeypatch)


def check_the_cli_issues_and_prints(services, tmp_path, monkeypatch):
    monkeypatch.setenv("LESSONCAST_DATA_DIR", str(services.settings.data_path))
    out = tmp_path / "batch.html"
    done = CliRunner().invoke(main, ["training", "certificates", "--programme", "2026-Q4", "--site", "t00-s00",
                                     "--print", str(out)])
    assert done.exit_code == 0, done.output
    assert "0 certificate(s) issued" in done.output and "2 certificate(s) printed" in done.output
    assert out.read_text("utf-8").count('class="certificate"') == 2
    with services.db.session() as session:
        assert sorted(c.prints for c in session.scalars(select(Certificate))) == [2, 2]
    refused = CliRunner().invoke(main, ["training", "certificates", "--programme", "2026-Q4", "--print", str(out)])
    assert refused.exit_code != 0 and "--site" in refused.output
    refused = CliRunner().invoke(main, ["training", "certificates", "--programme", "NOPE"])
    assert refused.exit_code != 0
