"""API errors speak the caller's language: the code never changes, the message follows ?lang= and Accept-Language
(English without either), and every refusal a service can make has its zh_CN translation."""

from __future__ import annotations

import ast
import re
import string
from functools import lru_cache
from pathlib import Path

from babel.messages.pofile import read_po

from server.i18n import TRANSLATIONS_DIR, _l, translator

SERVER = Path(__file__).resolve().parents[2] / "server"
MEDIA = SERVER.parent / "media"
KINDS = {"MediaError", "BadRequest", "Invalid", "Unauthenticated", "Forbidden", "NotFound", "Conflict", "Gone", "TooLarge",
         "UnsupportedType", "TooMany", "Unavailable", "NoSpace", "DomainError", "ApiError"}
# Refusals that pass on a message made elsewhere rather than their own text; each is translated where it is made
# (a LazyText) or is a value's own description. (file, code): why.
PASSED_ON = {
    ("org/service.py", "field_invalid"): "a FieldError of the CSV/field checks, also listed per row",
    ("devices/registry.py", "bad_setting"): "the device config payload's own ValueError",
    ("api/attendance.py", "bad_format"): "report_export.render's ValueError naming the format or table",
    ("console/attendance.py", "bad_format"): "report_export.render's ValueError naming the format or table",
    ("api/devices.py", "csv_invalid"): "OrgImportError.summary(), a LazyText",
    ("api/org.py", "csv_invalid"): "OrgImportError.summary(), a LazyText",
    ("api/attendance.py", "csv_invalid"): "OrgImportError.summary(), a LazyText",
    ("api/training.py", "csv_invalid"): "OrgImportError.summary(), a LazyText",
    ("accounts/users.py", "unknown_township"): "find_township's ValueError, a LazyText",
}
CJK = re.compile(r"[\u4e00-\u9fff]")
_WORDS = re.compile(r"{[^}]*}")  # a template's fields, left out when asking whether it has words to translate


@lru_cache(maxsize=None)
def _tree(path: Path) -> ast.AST:
    return ast.parse(path.read_text(encoding="utf-8"))


def _name(func: ast.expr) -> str | None:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def _refusals():
    """(file, line, code, message node) of every refusal the server's (and the media pipeline's) code constructs."""
    for path in sorted(SERVER.rglob("*.py")) + sorted(MEDIA.rglob("*.py")):
        if "migrations" in path.parts or path.name == "errors.py":
            continue
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Call) and _name(node.func) in KINDS:
                at = 2 if _name(node.func) == "ApiError" else 1
                if len(node.args) <= at:
                    continue
                code = node.args[at - 1]
                yield (str(path.relative_to(SERVER.parent)), node.lineno,
                       code.value if isinstance(code, ast.Constant) else None, node.args[at])


def _lazy_templates() -> dict[str, str]:
    """Every _l("template") literal in server/ and _t("template") in media/, with where it is."""
    found = {}
    for path in sorted(SERVER.rglob("*.py")) + sorted(MEDIA.rglob("*.py")):
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Call) and _name(node.func) in ("_l", "_t"):
                assert node.args and isinstance(node.args[0], ast.Constant), f"{path}:{node.lineno}: _l needs a literal"
                found[node.args[0].value] = f"{path.relative_to(SERVER.parent)}:{node.lineno}"
    return found


def _fields(template: str) -> list[tuple]:
    return sorted((n, c, s) for _, n, s, c in string.Formatter().parse(template) if n is not None)


def test_every_refusal_has_a_translatable_message():
    plain = []
    for file, line, code, message in _refusals():
        if isinstance(message, ast.Call) and _name(message.func) in ("_l", "_t"):
            continue
        if (file.removeprefix("server/"), code) in PASSED_ON or \
                (isinstance(message, ast.Name) and file.startswith("media/")):  # a _t(...) chosen just above
            continue
        plain.append(f"{file}:{line} ({code}): {ast.unparse(message)[:80]}")
    assert not plain, "refusals whose message is not _l(...) (the caller's language cannot reach it):\n" + \
        "\n".join(plain)


def test_every_error_message_has_a_zh_cn_translation():
    with open(TRANSLATIONS_DIR / "zh_CN" / "LC_MESSAGES" / "messages.po", "rb") as po:
        catalogue = {m.id: m.string for m in read_po(po) if m.id}
    zh = translator("zh_CN")
    missing, broken = [], []
    for template, where in _lazy_templates().items():
        if not catalogue.get(template) or zh(template) == template:
            missing.append(f"{where}: {template[:70]}")
        elif _fields(catalogue[template]) != _fields(template) or \
                (re.search("[A-Za-z]", _WORDS.sub("", template)) and not CJK.search(catalogue[template])):
            broken.append(f"{where}: {template[:70]}")
    assert not missing, "untranslated (run 'make translations' and fill in messages.po):\n" + "\n".join(missing)
    assert not broken, "translations whose {fields} differ from the English, or not Chinese:\n" + "\n".join(broken)


def test_an_untranslated_message_is_caught():
    """The check above can fail: a new text has no catalogue entry, and translating it gives it back unchanged."""
    text = _l("A refusal nobody translated ({n}).", n=3)
    assert text.translate("zh_CN") == str(text) == "A refusal nobody translated (3)."


def test_the_same_refusal_in_english_and_chinese(client, auth):
    media = auth("media")
    answers = {lang: client.get("/api/v1/lessons/987654", headers={**media, "Accept-Language": lang})
               for lang in ("en-US,en;q=0.9", "zh-CN,zh;q=0.9,en;q=0.8")}
    en, zh = (answers[k].get_json()["error"] for k in answers)
    assert all(a.status_code == 404 for a in answers.values())
    assert en["code"] == zh["code"] == "lesson_not_found"
    assert en["message"] == "There is no lesson 987654."
    assert zh["message"] == "没有课件 987654。"
    # Without Accept-Language (a script, curl): English. ?lang= wins over the header.
    plain = client.get("/api/v1/lessons/987654", headers=media).get_json()["error"]
    assert plain == en
    asked = client.get("/api/v1/lessons/987654?lang=zh_CN", headers={**media, "Accept-Language": "en"})
    assert asked.get_json()["error"]["message"] == zh["message"]

    # Every layer: authentication, roles, Flask's own 404, validation, a service, the media pipeline.
    zh = {"Accept-Language": "zh-CN"}
    no_token = client.get("/api/v1/lessons", headers=zh).get_json()["error"]
    assert no_token["code"] == "unauthenticated" and "需要 API 令牌" in no_token["message"]
    forbidden = client.post("/api/v1/programmes", json={}, headers={**auth("viewer"), **zh}).get_json()["error"]
    assert forbidden["code"] == "forbidden" and "角色不能执行此操作" in forbidden["message"]
    nowhere = client.get("/api/v1/no-such-thing", headers=zh).get_json()["error"]
    assert nowhere["code"] == "not_found" and CJK.search(nowhere["message"])
    bad = client.post("/api/v1/programmes", json={"code": "2026-Q4", "title": "四季度", "valid_from": "soon",
                                                  "valid_until": "2026-12-31"},
                      headers={**auth("media"), **zh}).get_json()["error"]
    assert bad["code"] == "bad_date" and "不是 2026-10-01 这样的日期" in bad["message"], bad
    assert bad["field"] == "valid_from"
    empty = {"file": (__import__("io").BytesIO(b""), "第一课.mp3"), "title": "第一课"}
    answer = client.post("/api/v1/lessons", data=empty, headers={**auth("media"), "Accept-Language": "zh-CN"},
                         content_type="multipart/form-data")
    error = answer.get_json()["error"]
    assert answer.status_code == 422 and error["code"] == "empty_file", error
    assert error["message"] == "第一课.mp3：文件为空（0 字节）；请重新上传"


def test_a_refusal_listing_problems_translates_each_one():
    """A training file with bad rows: one refusal lists every row's problem, each in the reader's language."""
    from server.errors import Invalid
    from server.training.trainings import parse_roster

    text = "member,title,date,hours\nM1,,2026-10-01,2\nM2,党课,,2\n" + "M3,党课,2026-10-01,x\n" * 21
    try:
        parse_roster(text, "t.csv")
    except Invalid as exc:
        refusal = exc
    else:
        raise AssertionError("a file with bad rows was accepted")
    assert refusal.message.startswith("t.csv:2: member and title must not be empty; t.csv:3: the date is empty; ")
    assert refusal.message.endswith(" (and 3 more). Nothing was stored.")
    zh = refusal.localised("zh_CN")
    assert zh.startswith("t.csv 第 2 行：党员编号和培训名称不能为空; t.csv 第 3 行：日期为空; "), zh
    assert "t.csv 第 4 行：hours：学时 'x' 不是数字" in zh and zh.endswith("（另有 3 处问题）。没有保存任何内容。")
    assert not re.search(r"must|empty|Nothing", zh)


def test_the_catalogue_defines_each_message_once():
    """A message defined twice (two branches adding the same text) makes msgfmt refuse the catalogue, while pybabel
    keeps one of the two translations silently."""
    text = (TRANSLATIONS_DIR / "zh_CN" / "LC_MESSAGES" / "messages.po").read_text(encoding="utf-8")
    keys = re.findall(r'^((?:msgctxt .*\n)?msgid (?:".*"\n)+)', text, re.M)
    doubled = sorted({key.strip()[:90] for key in keys if keys.count(key) > 1})
    assert not doubled, "defined more than once in messages.po:\n" + "\n".join(doubled)
