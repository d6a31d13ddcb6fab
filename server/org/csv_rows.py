"""Organisation CSV files, the pure part: decode a staff export, read its rows and check every value.

County staff export these files from Excel, so a file may be GB18030 or UTF-8 with a BOM and have Chinese
headers. A file is checked row by row (pure functions over plain data, every bad row reported with its line
and field as OrgImportError) before anything is written. No database here: the writing, listing and editing
are in server.org.service.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable, Iterable, Mapping, Optional

from server.i18n import LazyList, LazyText, _l

IMPORT_KINDS = ("sites", "groups", "members")
# The kinds of group (the groups.kind column holds one of these; the CSV checks and the API enforce it).
GROUP_KINDS = ("township", "village", "branch", "special")
CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FLAG = re.compile(r"^[a-z0-9_]{1,32}$")
# Group keys are referenced from the members file's 'groups' column, so they may not hold its separators.
GROUP_KEY = re.compile(r"^[^\s;；,，]{1,100}$")
EXCEL_NUMBER = re.compile(r"^\d+(\.\d+)?[eE][+-]?\d+$")
DATE_FORMS = (re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:\s+0?0:00(?::00)?)?$"),
              re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})日$"))
LIST_SEPARATORS = re.compile(r"[;；,，]")
NAME_LIMIT = 100
CARD_LIMIT = 128
BRANCH_PREFIX = "branch:"
# A branch group's key is 'branch:' + the branch name and must fit the 100-character key column.
# Branch groups are keyed per township ("branch:qs:机关党支部"): two townships may each have a branch of that name.
BRANCH_LIMIT = 100 - len(BRANCH_PREFIX) - 65
KIND_WORDS = {"乡镇": "township", "村": "village", "支部": "branch", "特殊": "special", "专项": "special"}
MANAGED_MEMBER_KINDS = ("branch", "special")

# Canonical column -> the headers staff write for it (English names are matched case-insensitively).
HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "township_code": ("乡镇编码", "乡镇代码"),
    "township_name": ("乡镇名称",),
    "site_code": ("站点编码", "村编码", "站点代码"),
    "site_name": ("站点名称", "村名称"),
    "member_id": ("党员编号", "member_no"),
    "name": ("姓名", "名称", "分组名称"),
    "branch": ("支部", "党支部", "所在支部"),
    "card_token": ("卡号", "card"),
    "joined": ("入党日期", "加入日期"),
    "left": ("离开日期",),
    "flags": ("标记",),
    "groups": ("分组",),
    "key": ("编码", "分组编码"),
    "kind": ("类型", "分组类型"),
    "role": ("职务", "身份"),
    "role_from": ("任职日期",),
}
# A member's role (its study-hour quota, server/training): the names a members file may give it.
ROLE_NAMES = {"member": "member", "党员": "member", "branch_secretary": "branch_secretary",
              "支部书记": "branch_secretary", "书记": "branch_secretary", "committee": "committee",
              "支委": "committee", "支委委员": "committee", "委员": "committee"}
# kind -> (required columns, optional columns)
COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "sites": (("township_code", "township_name", "site_code", "site_name"), ()),
    "groups": (("key", "name", "kind"), ("township_code",)),
    "members": (("member_id", "name", "site_code"), ("branch", "card_token", "joined", "left", "flags", "groups",
                                                   "role", "role_from")),
}


# ---------------------------------------------------------------------------------------------------------------
# Errors and results


@dataclass(frozen=True)
class RowError:
    """One problem in a file: the 1-based line (the header is line 1), the column and what to do."""

    line: int
    field: str
    message: str | LazyText  # English as a str; the API and console translate it for their reader

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape used in the API's 'rows' list."""
        return {"line": self.line, "field": self.field, "message": self.message}


class OrgImportError(Exception):
    """A file that was refused, with every problem found; nothing of it was written."""

    def __init__(self, errors: list[RowError]):
        self.errors = sorted(errors, key=lambda e: e.line)
        super().__init__(str(self.summary("the file")))

    def summary(self, filename: str) -> LazyText:
        """One sentence for people: how many rows are bad and that nothing was imported."""
        lines = {e.line for e in self.errors}
        if lines == {1}:
            return _l("{filename}: the header row has a problem; nothing was imported. Fix it and import the file "
                      "again.", filename=filename)
        if len(lines) == 1:
            return _l("{filename}: 1 row has problems; nothing was imported. Fix them and import the file again.",
                      filename=filename)
        return _l("{filename}: {count} rows have problems; nothing was imported. Fix them and import the file "
                  "again.", filename=filename, count=len(lines))


class FieldError(ValueError):
    """One value that is wrong, with a message naming the limit or the fix."""

    def __init__(self, field_name: str, message: str | LazyText):
        super().__init__(message)
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class ImportResult:
    """How many rows of an import created, changed or left alone their record."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0


# ---------------------------------------------------------------------------------------------------------------
# Reading the file (pure)


def decode_csv(data: bytes) -> str:
    """The file's text: UTF-8 (with or without BOM), UTF-16 with a BOM, else GB18030; OrgImportError otherwise."""
    if data.startswith(b"PK\x03\x04") or data.startswith(b"\xd0\xcf\x11\xe0"):
        raise _file_error(_l("this is an Excel workbook, not a CSV file. In Excel use 'Save As' → "
                             "'CSV (comma delimited)' and import that file"))
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        candidates: tuple[str, ...] = ("utf-16",)
    else:
        candidates = ("utf-8-sig", "gb18030")
    for encoding in candidates:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if any(unicodedata.category(ch) == "Cc" and ch not in "\t\r\n" for ch in text):
            break
        return text
    raise _file_error(_l("this is not a text CSV file (it is neither UTF-8 nor GB18030 text). "
                         "Export the sheet from Excel as CSV and import that file"))


def _file_error(message: str | LazyText, field_name: str = "file") -> OrgImportError:
    return OrgImportError([RowError(1, field_name, message)])


def _header_name(cell: str) -> str:
    return re.sub(r"[\s\-]+", "_", unicodedata.normalize("NFKC", cell).strip().lstrip("\ufeff").strip()).lower()


def _alias_table() -> dict[str, str]:
    table = {name: name for name in HEADER_ALIASES}
    for name, aliases in HEADER_ALIASES.items():
        table.update({_header_name(alias): name for alias in aliases})
    return table


def _expected(kind: str) -> LazyText:
    required, optional = COLUMNS[kind]

    def show(names: tuple[str, ...]) -> str:
        return ", ".join(f"{name} ({HEADER_ALIASES[name][0]})" for name in names)

    if optional:
        return _l("required: {required}; optional: {optional}", required=show(required), optional=show(optional))
    return _l("required: {required}", required=show(required))


@dataclass(frozen=True)
class Table:
    """A file's rows as {column: value}, with each row's line number and the columns the header named."""

    columns: frozenset[str]
    rows: list[tuple[int, dict[str, str]]]
    unnamed: frozenset[int] = frozenset()


def _records(text: str) -> Iterable[tuple[int, list[str]]]:
    first = text.split("\n", 1)[0]
    dialect = "excel-tab" if "\t" in first and "," not in first else "excel"
    reader = csv.reader(io.StringIO(text, newline=""), dialect=dialect, strict=True)
    start = 1
    try:
        for record in reader:
            yield start, record
            start = reader.line_num + 1
    except csv.Error as exc:
        raise OrgImportError([RowError(start, "file", _l("the CSV cannot be read here ({problem}); check the "
                                                         "quotes on this line", problem=str(exc)))]) from None


def _header_columns(header: list[str]) -> dict[int, str]:
    aliases = _alias_table()
    return {i: aliases.get(_header_name(cell), "?" + cell.strip()) for i, cell in enumerate(header)
            if cell.strip().lstrip("\ufeff")}


def detect_kind(text: str) -> str:
    """Which import a file is for (sites, groups or members), from its header; OrgImportError when unclear."""
    for _line, header in _records(text):
        names = set(_header_columns(header).values())
        if "member_id" in names:
            return "members"
        if "key" in names or "kind" in names:
            return "groups"
        if names & {"site_name", "township_name"}:
            return "sites"
        break
    raise _file_error(_l("cannot tell which kind of file this is from its header. A sites file has {sites}. "
                         "A groups file has {groups}. A members file has {members}", sites=_expected("sites"),
                         groups=_expected("groups"), members=_expected("members")), "header")


def read_table(text: str, kind: str) -> Table:
    """The rows of a file of the given kind; OrgImportError (line 1) when the header is not the expected one."""
    records = iter(_records(text))
    first = next(records, None)
    if first is None:
        raise _file_error(_l("the file is empty; it needs a header row with {expected}",
                             expected=_expected(kind)), "header")
    columns = _header_columns(first[1])
    required, optional = COLUMNS[kind]
    names = list(columns.values())
    unknown = [n[1:] for n in names if n.startswith("?") or n not in required + optional]
    missing = [n for n in required if n not in names]
    doubled = sorted({n for n in names if names.count(n) > 1 and not n.startswith("?")})
    if unknown or missing or doubled:
        parts = ([_l("unknown column(s) {columns}", columns=", ".join(repr(u) for u in unknown))] if unknown
                 else []) + \
                ([_l("missing column(s) {columns}", columns=", ".join(missing))] if missing else []) + \
                ([_l("column(s) given twice: {columns}", columns=", ".join(doubled))] if doubled else [])
        raise _file_error(_l("{problems}. A {kind} file has {expected}", problems=LazyList("; ", parts),
                             kind=kind, expected=_expected(kind)), "header")
    rows = []
    unnamed: set[int] = set()
    for line, record in records:
        if not any(cell.strip() for cell in record):
            continue  # blank lines and Excel's trailing ",,,," rows
        values = {name: record[i].strip() if i < len(record) else "" for i, name in columns.items()}
        stray = [i for i in range(len(record)) if i not in columns and record[i].strip()]
        if stray:
            unnamed.add(line)
        rows.append((line, values))
    return Table(frozenset(names), rows, frozenset(unnamed))


# ---------------------------------------------------------------------------------------------------------------
# Checking values (pure): each returns the clean value or raises FieldError


def check_code(value: str, name: str) -> str:
    """A township, site or member code."""
    value = unicodedata.normalize("NFKC", value).strip()
    if not value:
        raise FieldError(name, _l("{name} is empty; every row needs one", name=name))
    if EXCEL_NUMBER.match(value):
        raise FieldError(name, _l("{value!r} looks like Excel turned the code into a number; format the column as Text "
                                  "in Excel and export again", value=value))
    if not CODE.match(value):
        bad = sorted({ch for ch in value if not (ch.isascii() and (ch.isalnum() or ch in "_.-"))})
        rule = _l("a code is 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
        if bad:
            raise FieldError(name, _l("{value!r} contains {characters}; {rule}", value=value,
                                      characters=" ".join(repr(ch) for ch in bad), rule=rule))
        raise FieldError(name, _l("{value!r}: {rule}", value=value, rule=rule))
    return value


def check_name(value: str, name: str, limit: int = NAME_LIMIT, required: bool = True) -> str:
    """A display name: non-empty (when required), at most LIMIT characters, no control characters."""
    value = value.strip()
    if not value and required:
        raise FieldError(name, _l("{name} is empty; every row needs one", name=name))
    if len(value) > limit:
        raise FieldError(name, _l("{name} is {length} characters; the limit is {limit}", name=name, length=len(value), limit=limit))
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise FieldError(name, _l("{name} contains control characters", name=name))
    return value


def check_date(value: str, name: str) -> Optional[date]:
    """A date as YYYY-MM-DD, YYYY/MM/DD or YYYY年M月D日; None when empty."""
    value = unicodedata.normalize("NFKC", value).strip()
    if not value:
        return None
    for form in DATE_FORMS:
        match = form.match(value)
        if match:
            try:
                return date(*(int(g) for g in match.groups()))
            except ValueError:
                raise FieldError(name, _l("{value!r} is not a real date", value=value)) from None
    raise FieldError(name, _l("{value!r} is not a date; write it as YYYY-MM-DD, YYYY/MM/DD or YYYY年M月D日",
                                 value=value))


def check_flags(value: str | Iterable[str], name: str = "flags") -> list[str]:
    """Member flags ('over70;at_sea'): lowercase letters, digits and '_'; returned sorted without repeats."""
    parts = LIST_SEPARATORS.split(value) if isinstance(value, str) else list(value)
    flags = set()
    for part in parts:
        flag = unicodedata.normalize("NFKC", str(part)).strip().lower()
        if not flag:
            continue
        if not FLAG.match(flag):
            raise FieldError(name, _l("flag {flag!r} is not allowed; flags are lowercase letters, digits and '_' "
                                      "(e.g. over70, at_sea, migrant), separated by ';'", flag=flag))
        flags.add(flag)
    return sorted(flags)


def split_keys(value: str | Iterable[str]) -> list[str]:
    """Group keys from a ';'-separated cell or a list, without repeats, in order."""
    parts = LIST_SEPARATORS.split(value) if isinstance(value, str) else list(value)
    keys: list[str] = []
    for part in parts:
        key = unicodedata.normalize("NFKC", str(part)).strip()
        if key and key not in keys:
            keys.append(key)
    return keys


def check_card(value: Optional[str], name: str = "card_token") -> Optional[str]:
    """A member's card token; None when empty."""
    value = unicodedata.normalize("NFKC", value or "").strip()
    if not value:
        return None
    if EXCEL_NUMBER.match(value):
        raise FieldError(name, _l("{value!r} looks like Excel turned the card number into a number; format the "
                                  "column as Text in Excel and export again", value=value))
    if len(value) > CARD_LIMIT or any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in value):
        raise FieldError(name, _l("{value!r} is not a card token: at most {limit} characters, no spaces", value=value,
                                  limit=CARD_LIMIT))
    return value


def check_group_key(value: str, name: str = "key", kind: str = "") -> str:
    """A group key; the hierarchy prefixes ('township:', 'village:', 'branch:') must match the kind."""
    value = unicodedata.normalize("NFKC", value).strip()
    if not value:
        raise FieldError(name, _l("{name} is empty; every row needs one", name=name))
    if not GROUP_KEY.match(value):
        raise FieldError(name, _l("{value!r} is not a group key: 1-100 characters without spaces, ';' or ','",
                                  value=value))
    prefix = value.split(":", 1)[0] if ":" in value else ""
    if prefix in ("township", "village", "branch") and kind and prefix != kind:
        raise FieldError(name, _l("a key starting '{prefix}:' is for a {prefix} group, not a {kind} group",
                                  prefix=prefix, kind=kind))
    return value


def check_kind(value: str, name: str = "kind") -> str:
    """A group kind: township, village, branch or special (or 乡镇, 村, 支部, 特殊)."""
    value = unicodedata.normalize("NFKC", value).strip()
    kind = KIND_WORDS.get(value, value.lower())
    if kind not in GROUP_KINDS:
        raise FieldError(name, _l("{value!r} is not a group kind; use one of {kinds}", value=value,
                                  kinds=", ".join(GROUP_KINDS)))
    return kind


class _RowCheck:
    """Collects each field's FieldError of one row as RowErrors."""

    def __init__(self, line: int, values: Mapping[str, str], errors: list[RowError]):
        self.line, self.values, self.errors = line, values, errors

    def take(self, name: str, check: Callable[..., Any], *args: Any) -> Any:
        try:
            return check(self.values.get(name, ""), name, *args)
        except FieldError as exc:
            self.fail(exc.field, exc.message)
            return None

    def fail(self, name: str, message: str | LazyText) -> None:
        self.errors.append(RowError(self.line, name, message))


def _unnamed_errors(table: Table) -> list[RowError]:
    return [RowError(line, "file", _l("this row has a value in a column with no header; give the column a "
                                      "header or delete the value")) for line in sorted(table.unnamed)]


@dataclass(frozen=True)
class SiteRow:
    """One good row of a sites file."""

    line: int
    township_code: str
    township_name: str
    site_code: str
    site_name: str


def check_sites(table: Table) -> list[SiteRow]:
    """The rows of a sites file, or OrgImportError naming every bad row."""
    errors = _unnamed_errors(table)
    rows: list[SiteRow] = []
    seen_sites: dict[str, int] = {}
    township_names: dict[str, tuple[str, int]] = {}
    for line, values in table.rows:
        row = _RowCheck(line, values, errors)
        township_code = row.take("township_code", check_code)
        township_name = row.take("township_name", check_name)
        site_code = row.take("site_code", check_code)
        site_name = row.take("site_name", check_name)
        if site_code in seen_sites:
            row.fail("site_code", _l("site {code!r} is already on line {line}; each site appears once",
                                     code=site_code, line=seen_sites[site_code]))
        elif site_code:
            seen_sites[site_code] = line
        if township_code and township_name:
            earlier = township_names.setdefault(township_code, (township_name, line))
            if earlier[0] != township_name:
                row.fail("township_name", _l("township {code!r} is called {name!r} on line {line}; give it one name",
                                             code=township_code, name=earlier[0], line=earlier[1]))
        if None not in (township_code, township_name, site_code, site_name):
            rows.append(SiteRow(line, township_code, township_name, site_code, site_name))
    if errors:
        raise OrgImportError(errors)
    return rows


@dataclass(frozen=True)
class GroupRow:
    """One good row of a groups file."""

    line: int
    key: str
    name: str
    kind: str
    township_code: Optional[str]


def check_groups(table: Table, township_codes: frozenset[str]) -> list[GroupRow]:
    """The rows of a groups file (townships as known in the database), or OrgImportError naming every bad row."""
    errors = _unnamed_errors(table)
    rows: list[GroupRow] = []
    seen: dict[str, int] = {}
    for line, values in table.rows:
        row = _RowCheck(line, values, errors)
        name = row.take("name", check_name)
        kind = row.take("kind", check_kind)
        key = row.take("key", check_group_key, kind or "")
        township = None
        if values.get("township_code"):
            township = row.take("township_code", check_code)
            if township and township not in township_codes:
                row.fail("township_code", _l("no township with code {code!r}; import the sites first",
                                                 code=township))
                township = None
        if key in seen:
            row.fail("key", _l("group {key!r} is already on line {line}; each group appears once", key=key,
                                line=seen[key]))
        elif key:
            seen[key] = line
        if None not in (key, name, kind):
            rows.append(GroupRow(line, key, name, kind, township))
    if errors:
        raise OrgImportError(errors)
    return rows


@dataclass(frozen=True)
class MemberContext:
    """What a members file is checked against: the sites, the groups and whose card each token is."""

    site_codes: frozenset[str]
    group_kinds: Mapping[str, str]
    card_owners: Mapping[str, str]


@dataclass(frozen=True)
class MemberRow:
    """One good row of a members file. ``given`` names the optional columns the file has; the others are kept."""

    line: int
    member_no: str
    name: str
    site_code: str
    given: frozenset[str] = frozenset()
    branch: str = ""
    card_token: Optional[str] = None
    joined: Optional[date] = None
    left: Optional[date] = None
    flags: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    role: Optional[str] = None
    role_from: Optional[date] = None


def check_role(value: str, name: str = "role") -> Optional[str]:
    """A member's role (member, branch_secretary, committee or 党员, 支部书记, 支委); None when empty."""
    value = unicodedata.normalize("NFKC", value).strip()
    if not value:
        return None
    role = ROLE_NAMES.get(value.lower()) or ROLE_NAMES.get(value)
    if role is None:
        raise FieldError(name, _l("role {value!r} is not known; write member (党员), branch_secretary (支部书记) or "
                                  "committee (支委)", value=value))
    return role


def check_group_refs(keys: list[str], group_kinds: Mapping[str, str], name: str = "groups") -> list[str]:
    """Group keys a member is put in: each must exist and be a branch or special group."""
    for key in keys:
        kind = group_kinds.get(key)
        if kind is None:
            raise FieldError(name, _l("no group with key {key!r}; import it in the groups file first", key=key))
        if kind not in MANAGED_MEMBER_KINDS:
            raise FieldError(name, _l("{key!r} is a {kind} group; members are in township and village groups "
                                      "through their site", key=key, kind=kind))
    return keys


def check_members(table: Table, known: MemberContext) -> list[MemberRow]:
    """The rows of a members file, or OrgImportError naming every bad row."""
    errors = _unnamed_errors(table)
    rows: list[MemberRow] = []
    seen: dict[str, int] = {}
    cards: dict[str, tuple[str, int]] = {}
    has = table.columns
    file_members = {unicodedata.normalize("NFKC", v.get("member_id", "")).strip() for _, v in table.rows}
    given = frozenset(has & set(COLUMNS["members"][1]))
    for line, values in table.rows:
        row = _RowCheck(line, values, errors)
        member_no = row.take("member_id", check_code)
        name = row.take("name", check_name)
        site = row.take("site_code", check_code)
        branch = row.take("branch", check_name, BRANCH_LIMIT, False) if "branch" in has else None
        card = row.take("card_token", check_card) if "card_token" in has else None
        joined = row.take("joined", check_date) if "joined" in has else None
        left = row.take("left", check_date) if "left" in has else None
        flags = row.take("flags", check_flags) if "flags" in has else None
        role = row.take("role", check_role) if "role" in has else None
        role_from = row.take("role_from", check_date) if "role_from" in has else None
        if role_from and not values.get("role", "").strip():
            row.fail("role_from", _l("role_from needs a role in the same row"))
        groups = None
        if "groups" in has:
            groups = row.take("groups", lambda v, n: check_group_refs(split_keys(v), known.group_kinds, n))
        if member_no in seen:
            row.fail("member_id", _l("member {member!r} is already on line {line}; each member appears once",
                                     member=member_no, line=seen[member_no]))
        elif member_no:
            seen[member_no] = line
        if site and site not in known.site_codes:
            row.fail("site_code", _l("no site with code {code!r}; import the sites first", code=site))
        if joined and left and left < joined:
            row.fail("left", _l("left {left} is before joined {joined}", left=left.isoformat(),
                                    joined=joined.isoformat()))
        if card:
            owner = known.card_owners.get(card)
            if card in cards:
                row.fail("card_token", _l("card {card!r} is already given to {member!r} on line {line}; a card belongs "
                                          "to one member", card=card, member=cards[card][0], line=cards[card][1]))
            elif owner is not None and owner != member_no and owner not in file_members:
                row.fail("card_token", _l("card {card!r} belongs to member {owner!r}; give that member another card "
                                          "first (or list them in this file with their new card)", card=card,
                                          owner=owner))
            else:
                cards[card] = (member_no or "?", line)
        if None not in (member_no, name, site) and not any(e.line == line for e in errors):
            rows.append(MemberRow(line, member_no, name, site, given, branch or "", card, joined, left,
                                  flags or [], groups or [], role, role_from))
    if errors:
        raise OrgImportError(errors)
    return rows
