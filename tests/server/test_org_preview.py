"""An import's preview runs the whole import, every check included, and rolls it back: the counts it would give, or
every bad row, and nothing stored or audited. An operator's import is limited to their township's rows."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from server.accounts.scope import Scope
from server.audit import AuditEntry
from server.errors import Forbidden
from server.org import service as org_service
from server.org.models import Member, Site

SITES = "township_code,township_name,site_code,site_name\nqs,青山镇,qs-03,南村\nqs,青山镇,qs-01,东村新名\n"


def _state(services) -> tuple:
    with services.db.session() as session:
        return (sorted(session.execute(select(Site.code, Site.name)).all()),
                session.scalar(select(func.count(Member.id))), session.scalar(select(func.count(AuditEntry.id))))


def test_a_preview_counts_what_the_import_would_do_and_stores_nothing(org):
    services = org
    before = _state(services)
    preview = org_service.import_file(services, SITES.encode("gbk"), "sites", "qs-op", "村.csv", preview=True)
    assert (preview.created, preview.updated, preview.unchanged) == (1, 1, 0)
    assert _state(services) == before
    done = org_service.import_file(services, SITES.encode("gbk"), "sites", "qs-op", "村.csv")
    assert (done.created, done.updated, done.unchanged) == (1, 1, 0)
    assert _state(services) != before


def test_a_preview_names_every_bad_row(org):
    bad = SITES + "qs,青山镇,,无编码\nqs,别的名字,qs-04,x\n"
    before = _state(org)
    with pytest.raises(org_service.OrgImportError) as refused:
        org_service.import_file(org, bad.encode(), "sites", "qs-op", preview=True)
    assert sorted({e.line for e in refused.value.errors}) == [4, 5]
    assert _state(org) == before


@pytest.mark.parametrize("kind, text, lines", [
    ("sites", SITES + "hw,海湾镇,hw-02,新渔村\n", [4]),
    ("sites", "township_code,township_name,site_code,site_name\nqs,青山镇,hw-01,改到青山\n", [2]),
    ("members", "member_id,name,site_code\nQS-9,甲,qs-01\nHW-9,乙,hw-01\n", [3]),
    ("groups", "key,name,kind\nspecial:all,全县,special\n", [2]),
])
def test_an_operator_imports_only_their_townships_rows(org, kind, text, lines):
    before = _state(org)
    for preview in (True, False):
        with pytest.raises(Forbidden) as refused:
            org_service.import_file(org, text.encode(), kind, "qs-op", scope=Scope("qs"), preview=preview)
        assert refused.value.code == "other_township"
        assert [row["line"] for row in refused.value.extra["rows"]] == lines
    assert _state(org) == before
