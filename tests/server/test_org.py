"""Org CSV imports: Excel exports in GB18030 or UTF-8 import, re-imports change nothing, and a bad file is
reported row by row with nothing of it written. Also the org API, its permissions and ``lessoncast org``."""

from datetime import date, datetime, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from lessoncast.cli import main
from server.audit import AuditEntry
from server.org import service as org
from server.org.csv_rows import OrgImportError, read_table
from server.org.models import Group, GroupLink, Member, Site, Township

pytestmark = pytest.mark.databases  # each test runs on SQLite and on PostgreSQL

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)

SITES = ("township_code,township_name,site_code,site_name\n"
         "qs,青山镇,qs01,青山村\n"
         "qs,青山镇,qs02,石门村\n"
         "hx,红星乡,hx01,红星村\n")
GROUPS = ("key,name,kind,township_code\n"
          "special:sea,海上支部,special,\n"
          "special:retired,退休党员,special,qs\n"
          "special:migrant,流动党员,special,\n")
MEMBERS_HEADER = "member_id,name,branch,site_code,card_token,joined,left,flags,groups\n"
MEMBERS = (MEMBERS_HEADER
           + "M001,张三,青山村党支部,qs01,CARD-1,1980-07-01,,over70;at_sea,special:sea\n"
           + "M002,李四,青山村党支部,qs01,,2001/5/4,,,\n"
           + "M003,王五,,hx01,CARD-3,2010年3月9日,2024-01-02,migrant；Over70,special:migrant;special:retired\n")


@pytest.fixture
def fixed_clock(services):
    services.clock = lambda: NOW
    return services


@pytest.fixture
def loaded(fixed_clock):
    """An instance with the sample sites, groups and members imported."""
    services = fixed_clock
    org.import_sites(services, SITES.encode(), "test")
    org.import_groups(services, GROUPS.encode(), "test")
    org.import_members(services, MEMBERS.encode(), "test")
    return services


def snapshot(services):
    """Row counts of every org table and every member's fields: what a refused import must leave alone."""
    with services.db.session() as session:
        counts = {model.__tablename__: session.scalar(select(func.count()).select_from(model))
                  for model in (Township, Site, Group, GroupLink, Member, AuditEntry)}
        members = [(m.member_no, m.name, m.branch, m.site_id, m.card_token, m.joined_on, m.left_on, m.flags,
                    m.updated_at) for m in session.scalars(select(Member).order_by(Member.id))]
    return counts, members


def group_members(services, key):
    with services.db.session() as session:
        return sorted(session.scalars(select(Member.member_no).join(GroupLink, GroupLink.member_id == Member.id)
                                      .join(Group, Group.id == GroupLink.group_id).where(Group.key == key)))


def group_sites(services, key):
    with services.db.session() as session:
        return sorted(session.scalars(select(Site.code).join(GroupLink, GroupLink.site_id == Site.id)
                                      .join(Group, Group.id == GroupLink.group_id).where(Group.key == key)))


def member(services, member_no):
    with services.db.session() as session:
        return session.scalar(select(Member).where(Member.member_no == member_no))


def card(services, token: str) -> str:
    """How card TOKEN is stored: its keyed digest (server/org/cards.py)."""
    from server.org import cards

    return cards.digest(services.card_key, token)


def test_sites_import_creates_townships_sites_and_hierarchy_groups(fixed_clock):
    services = fixed_clock
    result = org.import_sites(services, SITES.encode(), "staff")
    assert result == org.ImportResult(created=3, updated=0, unchanged=0)
    assert [(t["code"], t["name"], t["sites"]) for t in org.list_townships(services)] == \
        [("hx", "红星乡", 1), ("qs", "青山镇", 2)]
    assert group_sites(services, "township:qs") == ["qs01", "qs02"]
    assert group_sites(services, "village:qs02") == ["qs02"]
    groups = {g["key"]: g for g in org.list_groups(services)}
    assert groups["township:qs"]["kind"] == "township" and groups["township:qs"]["name"] == "青山镇"
    assert groups["village:hx01"]["kind"] == "village" and groups["village:hx01"]["township"] == "hx"
    with services.db.session() as session:
        audit = session.scalars(select(AuditEntry)).one()
    assert (audit.action, audit.actor, audit.at) == ("org.import.sites", "staff", NOW)
    assert audit.details == {"created": 3, "updated": 0, "unchanged": 0}


def test_reimporting_the_same_files_changes_nothing(loaded):
    before = snapshot(loaded)
    loaded.clock = lambda: datetime(2026, 4, 1, tzinfo=timezone.utc)
    assert org.import_sites(loaded, SITES.encode(), "test") == org.ImportResult(0, 0, 3)
    assert org.import_groups(loaded, GROUPS.encode(), "test") == org.ImportResult(0, 0, 3)
    assert org.import_members(loaded, MEMBERS.encode(), "test") == org.ImportResult(0, 0, 3)
    after = snapshot(loaded)
    assert after[1] == before[1], "members untouched, updated_at included"
    assert {k: v for k, v in after[0].items() if k != "audit_log"} == \
        {k: v for k, v in before[0].items() if k != "audit_log"}


def test_gb18030_file_with_chinese_headers_imports(fixed_clock):
    text = ("乡镇编码,乡镇名称,村编码,村名称\r\n"
            "dh,东湖镇,dh01,\"东湖村, 一组\"\r\n"
            "dh,东湖镇,dh02,𠮷村\r\n")  # 𠮷 is outside GBK: only GB18030 has it
    result = org.import_sites(fixed_clock, text.encode("gb18030"), "staff")
    assert result.created == 2
    assert [s["name"] for s in org.list_sites(fixed_clock, "dh")] == ["东湖村, 一组", "𠮷村"]


def test_utf8_bom_and_tab_separated_exports_import(fixed_clock):
    org.import_sites(fixed_clock, b"\xef\xbb\xbf" + SITES.encode(), "staff")
    tabbed = "站点编码\t站点名称\t乡镇编码\t乡镇名称\nqs03\t新村\tqs\t青山镇\n"
    assert org.import_sites(fixed_clock, tabbed.encode("utf-8"), "staff").created == 1
    assert [s["code"] for s in org.list_sites(fixed_clock, "qs")] == ["qs01", "qs02", "qs03"]


def test_site_moving_to_another_township_moves_its_group_link(loaded):
    moved = SITES.replace("qs,青山镇,qs02,石门村", "hx,红星乡,qs02,石门村")
    assert org.import_sites(loaded, moved.encode(), "staff") == org.ImportResult(0, 1, 2)
    assert group_sites(loaded, "township:qs") == ["qs01"]
    assert group_sites(loaded, "township:hx") == ["hx01", "qs02"]


def test_members_import_flags_dates_branch_and_groups(loaded):
    zhang, wang = member(loaded, "M001"), member(loaded, "M003")
    assert zhang.flags == ["at_sea", "over70"] and zhang.card_token == card(loaded, "CARD-1")
    assert zhang.joined_on == date(1980, 7, 1) and member(loaded, "M002").joined_on == date(2001, 5, 4)
    assert (wang.joined_on, wang.left_on, wang.flags) == (date(2010, 3, 9), date(2024, 1, 2), ["migrant", "over70"])
    assert group_members(loaded, "branch:qs:青山村党支部") == ["M001", "M002"]
    assert group_members(loaded, "special:sea") == ["M001"]
    assert group_members(loaded, "special:retired") == ["M003"]
    branch = {g["key"]: g for g in org.list_groups(loaded, "branch")}["branch:qs:青山村党支部"]
    assert branch["township"] == "qs" and branch["members"] == 2


def test_members_reimport_replaces_branch_and_special_links(loaded):
    changed = MEMBERS.replace("over70;at_sea,special:sea", "over70,special:retired") \
                     .replace("M002,李四,青山村党支部", "M002,李四,石门村党支部")
    assert org.import_members(loaded, changed.encode(), "test") == org.ImportResult(0, 2, 1)
    assert group_members(loaded, "special:sea") == []
    assert group_members(loaded, "special:retired") == ["M001", "M003"]
    assert group_members(loaded, "branch:qs:青山村党支部") == ["M001"]
    assert group_members(loaded, "branch:qs:石门村党支部") == ["M002"]
    assert member(loaded, "M001").flags == ["over70"]


def test_cards_may_swap_between_members_of_one_file(loaded):
    swapped = MEMBERS.replace("CARD-1", "CARD-X").replace("CARD-3", "CARD-1").replace("CARD-X", "CARD-3")
    assert org.import_members(loaded, swapped.encode(), "test").updated == 2
    assert (member(loaded, "M001").card_token, member(loaded, "M003").card_token) == (card(loaded, "CARD-3"),
                                                                                      card(loaded, "CARD-1"))


def test_file_with_only_a_header_imports_nothing(loaded):
    before = snapshot(loaded)
    assert org.import_members(loaded, MEMBERS_HEADER.encode(), "test") == org.ImportResult(0, 0, 0)
    assert snapshot(loaded)[1] == before[1]


ROW = "M009,赵六,,qs02,,2020-01-01,,,"


@pytest.mark.parametrize("body, line, field", [
    ("member_id,name,branch\nM009,赵六,\n", 1, "header"),
    ("member_id,name,site_code,remark\nM009,赵六,qs01,x\n", 1, "header"),
    (MEMBERS_HEADER + ROW + "\n" + ROW.replace("赵六", "赵七") + "\n", 3, "member_id"),
    (MEMBERS_HEADER + ROW.replace("qs02", "x9") + "\n", 2, "site_code"),
    (MEMBERS_HEADER + ROW.replace("2020-01-01", "2020-02-30") + "\n", 2, "joined"),
    (MEMBERS_HEADER + ROW.replace("2020-01-01", "1.1.2020") + "\n", 2, "joined"),
    (MEMBERS_HEADER + ROW.replace("2020-01-01,", "2020-01-01,2019-12-31") + "\n", 2, "left"),
    (MEMBERS_HEADER + "\n" + ROW.replace("qs02,", "qs02,C9") + "\n" + ROW.replace("M009", "M010")
     .replace("qs02,", "qs02,C9") + "\n", 4, "card_token"),
    (MEMBERS_HEADER + ROW.replace("qs02,", "qs02,CARD-1") + "\n", 2, "card_token"),
    (MEMBERS_HEADER + ROW + "special:nope\n", 2, "groups"),
    (MEMBERS_HEADER + ROW + "township:qs\n", 2, "groups"),
    (MEMBERS_HEADER + ROW.replace(",,,", ",,at sea,") + "\n", 2, "flags"),
    (MEMBERS_HEADER + ROW.replace("赵六", "") + "\n", 2, "name"),
    (MEMBERS_HEADER + ROW.replace("M009", "") + "\n", 2, "member_id"),
    (MEMBERS_HEADER + ROW.replace("M009", "M/009") + "\n", 2, "member_id"),
    (MEMBERS_HEADER + ROW.replace("M009", "3.30102E+09") + "\n", 2, "member_id"),
    (MEMBERS_HEADER + '"M009,赵六\n', 2, "file"),
    # A good change to an existing member in the same file must not be written either.
    (MEMBERS.replace("M002,李四", "M002,李四改") + ROW.replace("qs02", "x9") + "\n", 5, "site_code"),
])
def test_bad_members_file_names_line_and_field_and_writes_nothing(loaded, body, line, field):
    before = snapshot(loaded)
    with pytest.raises(org.OrgImportError) as caught:
        org.import_members(loaded, body.encode(), "test")
    assert [(e.line, e.field) for e in caught.value.errors] == [(line, field)], caught.value.errors
    assert caught.value.errors[0].message
    assert snapshot(loaded) == before
    assert member(loaded, "M002").name == "李四"


def test_every_bad_row_is_reported_at_once(loaded):
    body = (MEMBERS_HEADER + ROW + "\n"
            + ROW.replace("M009", "M010").replace("qs02", "x9") + "\n"
            + ROW.replace("M009", "M011").replace("赵六", "").replace("2020-01-01", "someday") + "\n")
    with pytest.raises(org.OrgImportError) as caught:
        org.import_members(loaded, body.encode(), "test")
    assert [(e.line, e.field) for e in caught.value.errors] == [(3, "site_code"), (4, "name"), (4, "joined")]
    assert "no site with code 'x9'; import the sites first" in caught.value.errors[0].message
    assert caught.value.summary("members.csv").startswith("members.csv: 2 rows have problems; nothing was imported")


@pytest.mark.parametrize("data", [bytes(range(256)) * 4, b"PK\x03\x04" + b"\x00" * 100, b"\xff\xd8\xff\xe0\x00\x10JFIF"])
def test_binary_garbage_is_refused_as_not_a_csv(loaded, data):
    before = snapshot(loaded)
    with pytest.raises(org.OrgImportError) as caught:
        org.import_members(loaded, data, "test")
    assert [(e.line, e.field) for e in caught.value.errors] == [(1, "file")]
    assert "CSV" in caught.value.errors[0].message
    assert snapshot(loaded) == before


@pytest.mark.parametrize("body, line, field", [
    (SITES + "qs,青山镇,qs/03,新村\n", 5, "site_code"),
    (SITES + "qs,青山乡,qs03,新村\n", 5, "township_name"),
    (SITES + "qs,青山镇,qs01,又一个\n", 5, "site_code"),
    (SITES + "qs,青山镇,qs03," + "长" * 101 + "\n", 5, "site_name"),
])
def test_bad_sites_file_writes_nothing(loaded, body, line, field):
    before = snapshot(loaded)
    with pytest.raises(org.OrgImportError) as caught:
        org.import_sites(loaded, body.encode(), "test")
    assert [(e.line, e.field) for e in caught.value.errors] == [(line, field)]
    assert snapshot(loaded) == before


@pytest.mark.parametrize("body, field", [
    ("key,name,kind\nspecial:x,X,club\n", "kind"),
    ("key,name,kind\ntownship:x,X,special\n", "key"),
    ("key,name,kind,township_code\nspecial:x,X,special,nowhere\n", "township_code"),
])
def test_bad_groups_file_writes_nothing(loaded, body, field):
    before = snapshot(loaded)
    with pytest.raises(org.OrgImportError) as caught:
        org.import_groups(loaded, body.encode(), "test")
    assert [(e.line, e.field) for e in caught.value.errors] == [(2, field)]
    assert snapshot(loaded) == before


def test_default_site_is_made_once(services):
    with services.db.session() as session:
        site = org.default_site(session)
        assert (site.code, site.name) == ("county", "县直属站点")
    with services.db.session() as session:
        assert org.default_site(session).id == site.id
    assert [(t["code"], t["name"]) for t in org.list_townships(services)] == [("county", "县直属")]
    assert group_sites(services, "township:county") == ["county"]
    assert group_sites(services, "village:county") == ["county"]


# --- API -------------------------------------------------------------------------------------------------------


def test_api_import_multipart_and_raw_csv(client, auth, services):
    import io

    admin = auth("admin")
    response = client.post("/api/v1/org/import?kind=sites", headers=admin,
                           data={"file": (io.BytesIO(SITES.encode("gb18030")), "sites.csv")})
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"kind": "sites", "created": 3, "updated": 0, "unchanged": 0}
    raw = client.post("/api/v1/org/import?kind=sites", headers={**admin, "Content-Type": "text/csv"},
                      data=SITES.encode())
    assert raw.get_json() == {"kind": "sites", "created": 0, "updated": 0, "unchanged": 3}
    detected = client.post("/api/v1/org/import", headers={**admin, "Content-Type": "text/csv"},
                           data=GROUPS.encode())
    assert detected.get_json()["kind"] == "groups" and detected.get_json()["created"] == 3


def test_api_import_refusal_lists_rows(client, auth, services):
    import io

    admin = auth("admin")
    client.post("/api/v1/org/import?kind=sites", headers={**admin, "Content-Type": "text/csv"}, data=SITES.encode())
    body = MEMBERS_HEADER + ROW + "\n" + ROW.replace("M009", "M010") + "\n" + ROW.replace("qs02", "x9") \
        + "\n" + ROW.replace("M009", "M011").replace("2020-01-01", "soon") + "\n"
    response = client.post("/api/v1/org/import?kind=members", headers=admin,
                           data={"file": (io.BytesIO(body.encode()), "members.csv")})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "csv_invalid"
    assert error["message"] == ("members.csv: 2 rows have problems; nothing was imported. "
                                "Fix them and import the file again.")
    assert error["rows"] == [
        {"line": 4, "field": "member_id", "message": "member 'M009' is already on line 2; each member appears once"},
        {"line": 4, "field": "site_code", "message": "no site with code 'x9'; import the sites first"},
        {"line": 5, "field": "joined", "message": "'soon' is not a date; write it as YYYY-MM-DD, YYYY/MM/DD or "
                                                  "YYYY年M月D日"},
    ]
    assert client.get("/api/v1/members", headers=admin).get_json()["total"] == 0


def test_viewer_may_list_but_not_import_or_edit(client, auth, loaded):
    viewer = auth("viewer")
    refused = client.post("/api/v1/org/import?kind=sites", headers={**viewer, "Content-Type": "text/csv"},
                          data=SITES.encode())
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "forbidden"
    assert client.patch("/api/v1/sites/qs01", headers=viewer, json={"name": "x"}).status_code == 403
    assert client.post("/api/v1/groups", headers=viewer, json={}).status_code == 403
    page = client.get("/api/v1/members?township=qs&limit=1", headers=viewer).get_json()
    assert page["total"] == 2 and [m["member_id"] for m in page["members"]] == ["M001"]
    assert "card_token" not in page["members"][0] and page["members"][0]["has_card"] is True
    assert client.post("/api/v1/org/import", data=SITES.encode()).status_code == 401


def test_api_lists(client, auth, loaded):
    viewer = auth("viewer")
    assert [t["code"] for t in client.get("/api/v1/townships", headers=viewer).get_json()["townships"]] == \
        ["hx", "qs"]
    sites = client.get("/api/v1/sites?township=qs", headers=viewer).get_json()["sites"]
    assert [(s["code"], s["members"]) for s in sites] == [("qs01", 2), ("qs02", 0)]
    assert client.get("/api/v1/sites?township=nope", headers=viewer).status_code == 404
    special = client.get("/api/v1/groups?kind=special", headers=viewer).get_json()["groups"]
    assert [g["key"] for g in special] == ["special:migrant", "special:retired", "special:sea"]
    found = client.get("/api/v1/members?q=王", headers=viewer).get_json()
    assert found["total"] == 1 and found["members"][0]["groups"] == ["special:migrant", "special:retired"]
    # A member number is found whatever its letters' case, on SQLite (whose LIKE ignores ASCII case) and on
    # PostgreSQL (whose LIKE does not); a % or _ typed is a character, not a wildcard.
    assert [m["member_id"] for m in client.get("/api/v1/members?q=m00", headers=viewer).get_json()["members"]] == \
        ["M001", "M002", "M003"]
    assert client.get("/api/v1/members?q=m0%25", headers=viewer).get_json()["total"] == 0
    page2 = client.get("/api/v1/members?limit=2&offset=2", headers=viewer).get_json()
    assert page2["total"] == 3 and [m["member_id"] for m in page2["members"]] == ["M003"]
    assert client.get("/api/v1/members?limit=0", headers=viewer).status_code == 400


def test_api_edits(client, auth, loaded):
    admin = auth("admin")
    moved = client.patch("/api/v1/sites/qs02", headers=admin, json={"township": "hx", "name": "石门新村"})
    assert moved.status_code == 200 and moved.get_json()["township"] == "hx"
    assert group_sites(loaded, "township:hx") == ["hx01", "qs02"]
    assert client.patch("/api/v1/sites/qs02", headers=admin, json={"township": "zz"}).get_json()["error"]["field"] \
        == "township"
    assert client.patch("/api/v1/sites/nope", headers=admin, json={"name": "x"}).status_code == 404

    created = client.post("/api/v1/groups", headers=admin, json={"key": "special:old", "name": "老党员",
                                                                "kind": "special"})
    assert created.status_code == 201
    assert client.post("/api/v1/groups", headers=admin, json={"key": "special:old", "name": "x",
                                                             "kind": "special"}).status_code == 409
    bad = client.post("/api/v1/groups", headers=admin, json={"key": "a b", "name": "x", "kind": "special"})
    assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "key"

    edited = client.patch("/api/v1/members/M002", headers=admin,
                          json={"groups": ["special:old"], "flags": "over70", "left": "2025/6/1"})
    assert edited.status_code == 200, edited.get_json()
    body = edited.get_json()
    assert body["groups"] == ["branch:qs:青山村党支部", "special:old"] and body["flags"] == ["over70"]
    assert body["left"] == "2025-06-01"
    taken = client.patch("/api/v1/members/M002", headers=admin, json={"card_token": "CARD-1"})
    assert taken.status_code == 409 and taken.get_json()["error"]["field"] == "card_token"
    early = client.patch("/api/v1/members/M002", headers=admin, json={"left": "1990-01-01"})
    assert early.status_code == 422 and early.get_json()["error"]["field"] == "left"
    assert client.patch("/api/v1/members/M002", headers=admin, json={"age": 3}).status_code == 422


# --- CLI -------------------------------------------------------------------------------------------------------


def test_cli_import_detects_kind_and_reports_line_errors(tmp_path, database_url):
    env = {"LESSONCAST_DATA_DIR": str(tmp_path / "data"), "LESSONCAST_DATABASE_URL": database_url}
    assert CliRunner().invoke(main, ["init"], env=env).exit_code == 0
    sites = tmp_path / "村.csv"
    sites.write_bytes(SITES.encode("gb18030"))
    result = CliRunner().invoke(main, ["org", "import", str(sites)], env=env)
    assert result.exit_code == 0, result.output
    assert "detected a sites file" in result.stderr and "sites: 3 created, 0 updated, 0 unchanged" in result.stdout

    members = tmp_path / "members.csv"
    members.write_text(MEMBERS_HEADER + ROW + "\n" + ROW.replace("M009", "M010").replace("qs02", "x9") + "\n",
                       encoding="utf-8-sig")
    refused = CliRunner().invoke(main, ["org", "import", str(members), "--kind", "members"], env=env)
    assert refused.exit_code == 1
    assert f"{members}:3: site_code: no site with code 'x9'; import the sites first" in refused.stderr
    assert "nothing was imported" in refused.stderr

    listing = CliRunner().invoke(main, ["org", "list", "sites"], env=env)
    assert listing.exit_code == 0 and "qs02" in listing.output and "石门村" in listing.output
    empty = CliRunner().invoke(main, ["org", "list", "members"], env=env)
    assert empty.exit_code == 0 and "M009" not in empty.output


def test_same_branch_name_in_two_townships_makes_two_groups(fixed_clock):
    services = fixed_clock
    org.import_sites(services, SITES.encode(), "test")
    org.import_members(services, (MEMBERS_HEADER + "M010,赵一,机关党支部,qs01,,,,,\n"
                                  "M011,钱二,机关党支部,hx01,,,,,\n").encode(), "test")
    assert group_members(services, "branch:qs:机关党支部") == ["M010"]
    assert group_members(services, "branch:hx:机关党支部") == ["M011"]


def test_api_import_refusal_lists_rows_in_the_readers_language(client, auth, services):
    """The row problems of a refused file are translated like the message: a township operator reads Chinese."""
    admin = auth("admin")
    client.post("/api/v1/org/import?kind=sites", headers={**admin, "Content-Type": "text/csv"}, data=SITES.encode())
    body = MEMBERS_HEADER + ROW + "\n" + ROW.replace("qs02", "x9").replace("M009", "M010") + "\n" \
        + ROW.replace("M009", "M012").replace("2020-01-01", "soon") + "\n"
    response = client.post("/api/v1/org/import?kind=members",
                           headers={**admin, "Content-Type": "text/csv", "Accept-Language": "zh-CN"},
                           data=body.encode())
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "csv_invalid" and "nothing was imported" not in error["message"]
    messages = {(row["line"], row["field"]): row["message"] for row in error["rows"]}
    assert messages[(3, "site_code")] == "没有编码为 'x9' 的站点；请先导入站点"
    assert messages[(4, "joined")] == "'soon' 不是日期；请写成 YYYY-MM-DD、YYYY/MM/DD 或 YYYY年M月D日"
    # The same file without Accept-Language (a script) reads English, and nothing was stored either way.
    english = client.post("/api/v1/org/import?kind=members", headers={**admin, "Content-Type": "text/csv"},
                          data=body.encode()).get_json()["error"]
    assert {(r["line"], r["field"]): r["message"] for r in english["rows"]}[(3, "site_code")] == \
        "no site with code 'x9'; import the sites first"
    assert client.get("/api/v1/members", headers=admin).get_json()["total"] == 0


def test_header_problems_are_translated_whole():
    """A header refusal is built from parts (unknown and missing columns, what the file needs); every part reads
    in the reader's language, not a Chinese sentence around English pieces."""
    with pytest.raises(OrgImportError) as caught:
        read_table("township_code,colour\nqs,red\n", "sites")
    problem = caught.value.errors[0].message
    assert str(problem).startswith("unknown column(s) 'colour'; missing column(s) township_name, site_code")
    chinese = problem.translate("zh_CN")
    assert chinese.startswith("未知的列 'colour'；缺少列 township_name, site_code") or \
        chinese.startswith("未知的列 'colour'; 缺少列 township_name, site_code")
    assert "必填列：township_code (乡镇编码)" in chinese and "required" not in chinese
