"""Organisation service: import townships, sites, groups and members from staff CSVs, list and edit them.

County staff export these files from Excel, so a file may be GB18030 or UTF-8 with a BOM and have Chinese
headers. A file is checked row by row first (pure functions over plain data, every bad row reported with its
line and field) and written in one transaction only when every row is good: nothing is ever half-imported.
Imports upsert by code or member id, so importing the same file again changes nothing.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable, Iterable, Mapping, Optional

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from server.errors import ApiError
from server.org_models import GROUP_KINDS, AuditEntry, Group, GroupLink, Member, Site, Township
from server.services import Services

IMPORT_KINDS = ("sites", "groups", "members")
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
DEFAULT_TOWNSHIP = ("county", "县直属")
DEFAULT_SITE = ("county", "县直属站点")

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
}
# kind -> (required columns, optional columns)
COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "sites": (("township_code", "township_name", "site_code", "site_name"), ()),
    "groups": (("key", "name", "kind"), ("township_code",)),
    "members": (("member_id", "name", "site_code"), ("branch", "card_token", "joined", "left", "flags", "groups")),
}


# ---------------------------------------------------------------------------------------------------------------
# Errors and results


@dataclass(frozen=True)
class RowError:
    """One problem in a file: the 1-based line (the header is line 1), the column and what to do."""

    line: int
    field: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape used in the API's 'rows' list."""
        return {"line": self.line, "field": self.field, "message": self.message}


class OrgImportError(Exception):
    """A file that was refused, with every problem found; nothing of it was written."""

    def __init__(self, errors: list[RowError]):
        self.errors = sorted(errors, key=lambda e: e.line)
        super().__init__(self.summary("the file"))

    def summary(self, filename: str) -> str:
        """One sentence for people: how many rows are bad and that nothing was imported."""
        lines = {e.line for e in self.errors}
        if lines == {1}:
            what = "the header row has a problem"
        else:
            what = f"{len(lines)} row has problems" if len(lines) == 1 else f"{len(lines)} rows have problems"
        return f"{filename}: {what}; nothing was imported. Fix them and import the file again."


class FieldError(ValueError):
    """One value that is wrong, with a message naming the limit or the fix."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class ImportResult:
    """How many rows of an import created, changed or left alone their record."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0


class _Counter:
    def __init__(self) -> None:
        self.counts = {"created": 0, "updated": 0, "unchanged": 0}

    def add(self, created: bool, changed: bool) -> None:
        self.counts["created" if created else "updated" if changed else "unchanged"] += 1

    def result(self) -> ImportResult:
        return ImportResult(**self.counts)


# ---------------------------------------------------------------------------------------------------------------
# Reading the file (pure)


def decode_csv(data: bytes) -> str:
    """The file's text: UTF-8 (with or without BOM), UTF-16 with a BOM, else GB18030; OrgImportError otherwise."""
    if data.startswith(b"PK\x03\x04") or data.startswith(b"\xd0\xcf\x11\xe0"):
        raise _file_error("this is an Excel workbook, not a CSV file. In Excel use 'Save As' → "
                          "'CSV (comma delimited)' and import that file")
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
    raise _file_error("this is not a text CSV file (it is neither UTF-8 nor GB18030 text). "
                      "Export the sheet from Excel as CSV and import that file")


def _file_error(message: str, field_name: str = "file") -> OrgImportError:
    return OrgImportError([RowError(1, field_name, message)])


def _header_name(cell: str) -> str:
    return re.sub(r"[\s\-]+", "_", unicodedata.normalize("NFKC", cell).strip().lstrip("\ufeff").strip()).lower()


def _alias_table() -> dict[str, str]:
    table = {name: name for name in HEADER_ALIASES}
    for name, aliases in HEADER_ALIASES.items():
        table.update({_header_name(alias): name for alias in aliases})
    return table


def _expected(kind: str) -> str:
    required, optional = COLUMNS[kind]

    def show(name: str) -> str:
        return f"{name} ({HEADER_ALIASES[name][0]})"

    text = "required: " + ", ".join(show(n) for n in required)
    return text + ("; optional: " + ", ".join(show(n) for n in optional) if optional else "")


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
        raise OrgImportError([RowError(start, "file", f"the CSV cannot be read here ({exc}); "
                                                      "check the quotes on this line")]) from None


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
    raise _file_error("cannot tell which kind of file this is from its header. A sites file has "
                      f"{_expected('sites')}. A groups file has {_expected('groups')}. "
                      f"A members file has {_expected('members')}", "header")


def read_table(text: str, kind: str) -> Table:
    """The rows of a file of the given kind; OrgImportError (line 1) when the header is not the expected one."""
    records = iter(_records(text))
    first = next(records, None)
    if first is None:
        raise _file_error(f"the file is empty; it needs a header row with {_expected(kind)}", "header")
    columns = _header_columns(first[1])
    required, optional = COLUMNS[kind]
    names = list(columns.values())
    unknown = [n[1:] for n in names if n.startswith("?") or n not in required + optional]
    missing = [n for n in required if n not in names]
    doubled = sorted({n for n in names if names.count(n) > 1 and not n.startswith("?")})
    if unknown or missing or doubled:
        parts = ([f"unknown column(s) {', '.join(repr(u) for u in unknown)}"] if unknown else []) + \
                ([f"missing column(s) {', '.join(missing)}"] if missing else []) + \
                ([f"column(s) given twice: {', '.join(doubled)}"] if doubled else [])
        raise _file_error("; ".join(parts) + f". A {kind} file has {_expected(kind)}", "header")
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
        raise FieldError(name, f"{name} is empty; every row needs one")
    if EXCEL_NUMBER.match(value):
        raise FieldError(name, f"{value!r} looks like Excel turned the code into a number; format the column "
                               "as Text in Excel and export again")
    if not CODE.match(value):
        bad = sorted({ch for ch in value if not (ch.isascii() and (ch.isalnum() or ch in "_.-"))})
        why = f"contains {' '.join(repr(ch) for ch in bad)}; " if bad else ""
        raise FieldError(name, f"{value!r} {why}a code is 1-64 letters, digits, '_', '.' or '-', starting with "
                               "a letter or digit")
    return value


def check_name(value: str, name: str, limit: int = NAME_LIMIT, required: bool = True) -> str:
    """A display name: non-empty (when required), at most LIMIT characters, no control characters."""
    value = value.strip()
    if not value and required:
        raise FieldError(name, f"{name} is empty; every row needs one")
    if len(value) > limit:
        raise FieldError(name, f"{name} is {len(value)} characters; the limit is {limit}")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise FieldError(name, f"{name} contains control characters")
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
                raise FieldError(name, f"{value!r} is not a real date") from None
    raise FieldError(name, f"{value!r} is not a date; write it as YYYY-MM-DD, YYYY/MM/DD or YYYY年M月D日")


def check_flags(value: str | Iterable[str], name: str = "flags") -> list[str]:
    """Member flags ('over70;at_sea'): lowercase letters, digits and '_'; returned sorted without repeats."""
    parts = LIST_SEPARATORS.split(value) if isinstance(value, str) else list(value)
    flags = set()
    for part in parts:
        flag = unicodedata.normalize("NFKC", str(part)).strip().lower()
        if not flag:
            continue
        if not FLAG.match(flag):
            raise FieldError(name, f"flag {flag!r} is not allowed; flags are lowercase letters, digits and '_' "
                                   "(e.g. over70, at_sea, migrant), separated by ';'")
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
        raise FieldError(name, f"{value!r} looks like Excel turned the card number into a number; format the "
                               "column as Text in Excel and export again")
    if len(value) > CARD_LIMIT or any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in value):
        raise FieldError(name, f"{value!r} is not a card token: at most {CARD_LIMIT} characters, no spaces")
    return value


def check_group_key(value: str, name: str = "key", kind: str = "") -> str:
    """A group key; the hierarchy prefixes ('township:', 'village:', 'branch:') must match the kind."""
    value = unicodedata.normalize("NFKC", value).strip()
    if not value:
        raise FieldError(name, f"{name} is empty; every row needs one")
    if not GROUP_KEY.match(value):
        raise FieldError(name, f"{value!r} is not a group key: 1-100 characters without spaces, ';' or ','")
    prefix = value.split(":", 1)[0] if ":" in value else ""
    if prefix in ("township", "village", "branch") and kind and prefix != kind:
        raise FieldError(name, f"a key starting '{prefix}:' is for a {prefix} group, not a {kind} group")
    return value


def check_kind(value: str, name: str = "kind") -> str:
    """A group kind: township, village, branch or special (or 乡镇, 村, 支部, 特殊)."""
    value = unicodedata.normalize("NFKC", value).strip()
    kind = KIND_WORDS.get(value, value.lower())
    if kind not in GROUP_KINDS:
        raise FieldError(name, f"{value!r} is not a group kind; use one of {', '.join(GROUP_KINDS)}")
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

    def fail(self, name: str, message: str) -> None:
        self.errors.append(RowError(self.line, name, message))


def _unnamed_errors(table: Table) -> list[RowError]:
    return [RowError(line, "file", "this row has a value in a column with no header; give the column a header "
                                   "or delete the value") for line in sorted(table.unnamed)]


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
            row.fail("site_code", f"site {site_code!r} is already on line {seen_sites[site_code]}; "
                                  "each site appears once")
        elif site_code:
            seen_sites[site_code] = line
        if township_code and township_name:
            earlier = township_names.setdefault(township_code, (township_name, line))
            if earlier[0] != township_name:
                row.fail("township_name", f"township {township_code!r} is called {earlier[0]!r} on line "
                                          f"{earlier[1]}; give it one name")
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
                row.fail("township_code", f"no township with code {township!r}; import the sites first")
                township = None
        if key in seen:
            row.fail("key", f"group {key!r} is already on line {seen[key]}; each group appears once")
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


def check_group_refs(keys: list[str], group_kinds: Mapping[str, str], name: str = "groups") -> list[str]:
    """Group keys a member is put in: each must exist and be a branch or special group."""
    for key in keys:
        kind = group_kinds.get(key)
        if kind is None:
            raise FieldError(name, f"no group with key {key!r}; import it in the groups file first")
        if kind not in MANAGED_MEMBER_KINDS:
            raise FieldError(name, f"{key!r} is a {kind} group; members are in township and village groups "
                                   "through their site")
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
        groups = None
        if "groups" in has:
            groups = row.take("groups", lambda v, n: check_group_refs(split_keys(v), known.group_kinds, n))
        if member_no in seen:
            row.fail("member_id", f"member {member_no!r} is already on line {seen[member_no]}; "
                                  "each member appears once")
        elif member_no:
            seen[member_no] = line
        if site and site not in known.site_codes:
            row.fail("site_code", f"no site with code {site!r}; import the sites first")
        if joined and left and left < joined:
            row.fail("left", f"left {left.isoformat()} is before joined {joined.isoformat()}")
        if card:
            owner = known.card_owners.get(card)
            if card in cards:
                row.fail("card_token", f"card {card!r} is already given to {cards[card][0]!r} on line "
                                       f"{cards[card][1]}; a card belongs to one member")
            elif owner is not None and owner != member_no and owner not in file_members:
                row.fail("card_token", f"card {card!r} belongs to member {owner!r}; give that member another "
                                       "card first (or list them in this file with their new card)")
            else:
                cards[card] = (member_no or "?", line)
        if None not in (member_no, name, site) and not any(e.line == line for e in errors):
            rows.append(MemberRow(line, member_no, name, site, given, branch or "", card, joined, left,
                                  flags or [], groups or []))
    if errors:
        raise OrgImportError(errors)
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Writing (one session, everything loaded once so a big file is not a query per row)


class _Org:
    """The organisation as loaded in one session, with the upserts the imports share."""

    def __init__(self, session: Session):
        self.session = session
        self.townships = {t.code: t for t in session.scalars(select(Township))}
        self.sites = {s.code: s for s in session.scalars(select(Site))}
        self.groups = {g.key: g for g in session.scalars(select(Group))}
        self.site_links: dict[int, dict[int, GroupLink]] = {}
        for link in session.scalars(select(GroupLink).where(GroupLink.site_id.is_not(None))):
            self.site_links.setdefault(link.site_id, {})[link.group_id] = link

    def township(self, code: str, name: str) -> tuple[Township, bool, bool]:
        """The township with CODE named NAME: (township, created, changed)."""
        township = self.townships.get(code)
        if township is None:
            township = self.townships[code] = Township(code=code, name=name)
            self.session.add(township)
            self.session.flush()
            return township, True, True
        changed = _assign(township, name=name)
        return township, False, changed

    def group(self, key: str, name: str, kind: str, township_id: Optional[int]) -> tuple[Group, bool, bool]:
        """The group with KEY, given the name, kind and township: (group, created, changed)."""
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(key=key, name=name, kind=kind, township_id=township_id)
            self.session.add(group)
            self.session.flush()
            return group, True, True
        return group, False, _assign(group, name=name, kind=kind, township_id=township_id)

    def site(self, code: str, name: str, township: Township) -> tuple[Site, bool, bool]:
        """The site with CODE in TOWNSHIP, with its hierarchy groups and links: (site, created, changed)."""
        site = self.sites.get(code)
        created = site is None
        if created:
            site = self.sites[code] = Site(code=code, name=name, township_id=township.id)
            self.session.add(site)
            self.session.flush()
            changed = True
        else:
            changed = _assign(site, name=name, township_id=township.id)
        return site, created, self._hierarchy(site, township) or changed

    def _hierarchy(self, site: Site, township: Township) -> bool:
        town_group, _, c1 = self.group(f"township:{township.code}", township.name, "township", township.id)
        village, _, c2 = self.group(f"village:{site.code}", site.name, "village", township.id)
        links = self.site_links.setdefault(site.id, {})
        changed = c1 or c2
        for group_id, link in list(links.items()):
            # A site that moved leaves its old township's group.
            group = self.session.get(Group, group_id)
            if group is not None and group.kind == "township" and group_id != town_group.id:
                self.session.delete(link)
                del links[group_id]
                changed = True
        for group in (town_group, village):
            if group.id not in links:
                links[group.id] = GroupLink(group_id=group.id, site_id=site.id)
                self.session.add(links[group.id])
                changed = True
        return changed


def _assign(row: Any, **values: Any) -> bool:
    """Set the attributes that differ; whether any did."""
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


def _audit(session: Session, services: Services, actor: str, action: str, subject: str,
           details: dict[str, Any]) -> None:
    session.add(AuditEntry(at=services.clock(), actor=actor, action=action, subject=subject, details=details))


def _import(services: Services, data: bytes, kind: str, actor: str, source: str,
            write: Callable[[Session, Table], ImportResult]) -> ImportResult:
    table = read_table(decode_csv(data), kind)
    with services.db.session() as session:
        result = write(session, table)
        counts = {"created": result.created, "updated": result.updated, "unchanged": result.unchanged}
        _audit(session, services, actor, f"org.import.{kind}", source, counts)
    return result


def import_sites(services: Services, data: bytes, actor: str, source: str = "") -> ImportResult:
    """Upsert the townships and sites of a sites CSV and their township and village groups; all or nothing."""

    def write(session: Session, table: Table) -> ImportResult:
        rows = check_sites(table)
        org, counter, touched = _Org(session), _Counter(), set()
        for row in rows:
            township, t_created, t_changed = org.township(row.township_code, row.township_name)
            first_mention = row.township_code not in touched
            touched.add(row.township_code)
            site, created, changed = org.site(row.site_code, row.site_name, township)
            counter.add(created, changed or (first_mention and (t_created or t_changed)))
        return counter.result()

    return _import(services, data, "sites", actor, source, write)


def import_groups(services: Services, data: bytes, actor: str, source: str = "") -> ImportResult:
    """Upsert the groups of a groups CSV (special groups such as 海上支部, retirees, migrant members)."""

    def write(session: Session, table: Table) -> ImportResult:
        org = _Org(session)
        rows = check_groups(table, frozenset(org.townships))
        counter = _Counter()
        for row in rows:
            township_id = org.townships[row.township_code].id if row.township_code else None
            _group, created, changed = org.group(row.key, row.name, row.kind, township_id)
            counter.add(created, changed)
        return counter.result()

    return _import(services, data, "groups", actor, source, write)


def import_members(services: Services, data: bytes, actor: str, source: str = "") -> ImportResult:
    """Upsert the members of a members CSV with their branch and special groups; all or nothing."""

    def write(session: Session, table: Table) -> ImportResult:
        org = _Org(session)
        members = {m.member_no: m for m in session.scalars(select(Member))}
        known = MemberContext(frozenset(org.sites), {k: g.kind for k, g in org.groups.items()},
                              {m.card_token: no for no, m in members.items() if m.card_token})
        rows = check_members(table, known)
        return _write_members(services, session, org, members, rows)

    return _import(services, data, "members", actor, source, write)


def _write_members(services: Services, session: Session, org: _Org, members: dict[str, Member],
                   rows: list[MemberRow]) -> ImportResult:
    now = services.clock()
    # Cards can move between members of one file; clear the moving ones first so no flush sees a card twice.
    for row in rows:
        member = members.get(row.member_no)
        if member is not None and "card_token" in row.given and member.card_token != row.card_token:
            member.card_token = None
    session.flush()
    created: set[str] = set()
    changed: set[str] = set()
    for row in rows:
        member = members.get(row.member_no)
        if member is None:
            member = members[row.member_no] = Member(member_no=row.member_no, name=row.name, branch="",
                                                     site_id=org.sites[row.site_code].id, flags=[], updated_at=now)
            session.add(member)
            created.add(row.member_no)
        if _assign(member, **_member_values(row, org.sites[row.site_code].id)):
            changed.add(row.member_no)
    session.flush()
    links = _member_links(session, [members[r.member_no].id for r in rows])
    for row in rows:
        member = members[row.member_no]
        keys = row.groups if "groups" in row.given else None
        if _sync_member_groups(org, member, keys, links.get(member.id, {})):
            changed.add(row.member_no)
    counter = _Counter()
    for row in rows:
        if row.member_no in changed:
            members[row.member_no].updated_at = now
        counter.add(row.member_no in created, row.member_no in changed)
    return counter.result()


def _member_values(row: MemberRow, site_id: int) -> dict[str, Any]:
    """The member attributes a row sets: its required fields and the optional columns the file has."""
    optional = {"branch": ("branch", row.branch), "card_token": ("card_token", row.card_token),
                "joined": ("joined_on", row.joined), "left": ("left_on", row.left), "flags": ("flags", row.flags)}
    values: dict[str, Any] = {"name": row.name, "site_id": site_id}
    values.update(dict(pair for column, pair in optional.items() if column in row.given))
    return values


def _member_links(session: Session, member_ids: list[int]) -> dict[int, dict[int, GroupLink]]:
    """Each member's links to branch and special groups, by group id."""
    result: dict[int, dict[int, GroupLink]] = {}
    query = (select(GroupLink).join(Group, Group.id == GroupLink.group_id)
             .where(GroupLink.member_id.is_not(None), Group.kind.in_(MANAGED_MEMBER_KINDS)))
    wanted = set(member_ids)
    for link in session.scalars(query):
        if link.member_id in wanted:
            result.setdefault(link.member_id, {})[link.group_id] = link
    return result


def branch_key(township_code: str, branch: str) -> str:
    """The group key of a township's party branch."""
    return f"{BRANCH_PREFIX}{township_code}:{branch}"


def _sync_member_groups(org: _Org, member: Member, keys: Optional[list[str]],
                        current: dict[int, GroupLink]) -> bool:
    """Make the member's branch and special links the branch group plus KEYS (or its special groups when None)."""
    session = org.session
    wanted: set[int] = set()
    changed = False
    if member.branch:
        site = session.get(Site, member.site_id)
        key = branch_key(site.township.code if site else "county", member.branch)
        group = org.groups.get(key)
        if group is None:  # an existing branch group keeps the name and township it was given
            group, _, _ = org.group(key, member.branch, "branch", site.township_id if site else None)
        wanted.add(group.id)
    if keys is None:
        wanted |= {gid for gid in current if session.get(Group, gid).kind == "special"}
    else:
        wanted |= {org.groups[key].id for key in keys}
    for group_id in set(current) - wanted:
        session.delete(current.pop(group_id))
        changed = True
    for group_id in wanted - set(current):
        current[group_id] = GroupLink(group_id=group_id, member_id=member.id)
        session.add(current[group_id])
        changed = True
    return changed


def default_site(session: Session) -> Site:
    """The county's own site (code 'county', 县直属站点, in township 'county', 县直属), made when missing."""
    org = _Org(session)
    township, _, _ = org.township(*DEFAULT_TOWNSHIP)
    existing = org.sites.get(DEFAULT_SITE[0])
    if existing is not None:
        return existing
    site, _, _ = org.site(DEFAULT_SITE[0], DEFAULT_SITE[1], township)
    return site


def import_file(services: Services, data: bytes, kind: str, actor: str, source: str = "") -> ImportResult:
    """Import a CSV of the given kind (sites, groups or members)."""
    importer = {"sites": import_sites, "groups": import_groups, "members": import_members}[kind]
    return importer(services, data, actor, source)


# ---------------------------------------------------------------------------------------------------------------
# Listing and editing (the API and the CLI)

MEMBER_PAGE_LIMIT = 500


def _api_field(exc: FieldError) -> ApiError:
    return ApiError(422, "field_invalid", exc.message, field=exc.field)


def _text(changes: Mapping[str, Any], name: str) -> str:
    value = changes[name]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ApiError(422, "field_invalid", f"{name} must be a string", field=name)
    return value


def _only(changes: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(changes) - set(allowed))
    if unknown:
        raise ApiError(422, "unknown_field", f"cannot set {', '.join(unknown)}; the fields are {', '.join(allowed)}",
                       field=unknown[0])


def _township_of(org: _Org, code: str, status: int = 422) -> Township:
    township = org.townships.get(code)
    if township is None:
        raise ApiError(status, "township_not_found",
                       f"no township with code {code!r}; see GET /api/v1/townships", field="township")
    return township


def list_townships(services: Services) -> list[dict[str, Any]]:
    """Every township with its number of sites, by code."""
    with services.db.session() as session:
        counts = dict(session.execute(select(Site.township_id, func.count(Site.id)).group_by(Site.township_id)).all())
        return [{"code": t.code, "name": t.name, "sites": counts.get(t.id, 0)}
                for t in session.scalars(select(Township).order_by(Township.code))]


def _site_json(site: Site, members: int = 0) -> dict[str, Any]:
    return {"code": site.code, "name": site.name, "township": site.township.code,
            "township_name": site.township.name, "members": members}


def list_sites(services: Services, township: Optional[str] = None) -> list[dict[str, Any]]:
    """Every site (of one township when given), by code, with its number of members; 404 for an unknown township."""
    with services.db.session() as session:
        query = select(Site).join(Township).order_by(Site.code)
        if township:
            _township_of(_Org(session), township, 404)
            query = query.where(Township.code == township)
        counts = dict(session.execute(select(Member.site_id, func.count(Member.id)).group_by(Member.site_id)).all())
        return [_site_json(site, counts.get(site.id, 0)) for site in session.scalars(query)]


def list_groups(services: Services, kind: Optional[str] = None) -> list[dict[str, Any]]:
    """Every group (of one kind when given), by key, with how many sites, devices and members it holds."""
    if kind:
        try:
            kind = check_kind(kind)
        except FieldError as exc:
            raise _api_field(exc) from None
    with services.db.session() as session:
        query = select(Group).order_by(Group.key)
        if kind:
            query = query.where(Group.kind == kind)
        towns = {t.id: t.code for t in session.scalars(select(Township))}
        counts: dict[int, dict[str, int]] = {}
        for group_id, site_id, device_id, member_id in session.execute(
                select(GroupLink.group_id, GroupLink.site_id, GroupLink.device_id, GroupLink.member_id)):
            c = counts.setdefault(group_id, {"sites": 0, "devices": 0, "members": 0})
            c["sites" if site_id else "devices" if device_id else "members"] += 1
        return [{"key": g.key, "name": g.name, "kind": g.kind, "township": towns.get(g.township_id),
                 **counts.get(g.id, {"sites": 0, "devices": 0, "members": 0})} for g in session.scalars(query)]


def _member_json(session: Session, member: Member, include_card: bool) -> dict[str, Any]:
    site = session.get(Site, member.site_id)
    keys = session.scalars(select(Group.key).join(GroupLink, GroupLink.group_id == Group.id)
                           .where(GroupLink.member_id == member.id).order_by(Group.key)).all()
    body = {"member_id": member.member_no, "name": member.name, "branch": member.branch, "site": site.code,
            "site_name": site.name, "township": site.township.code, "has_card": member.card_token is not None,
            "joined": member.joined_on.isoformat() if member.joined_on else None,
            "left": member.left_on.isoformat() if member.left_on else None, "flags": list(member.flags),
            "groups": list(keys), "updated_at": member.updated_at.isoformat()}
    if include_card:
        body["card_token"] = member.card_token
    return body


def list_members(services: Services, site: Optional[str] = None, township: Optional[str] = None,
                 q: Optional[str] = None, limit: int = 50, offset: int = 0,
                 include_card: bool = False) -> dict[str, Any]:
    """A page of members by member id, filtered by site, township and a search of name or id, with the total."""
    if not 1 <= limit <= MEMBER_PAGE_LIMIT or offset < 0:
        raise ApiError(422, "field_invalid", f"limit is 1-{MEMBER_PAGE_LIMIT} and offset 0 or more",
                       field="limit" if not 1 <= limit <= MEMBER_PAGE_LIMIT else "offset")
    with services.db.session() as session:
        query = select(Member).join(Site, Site.id == Member.site_id).join(Township, Township.id == Site.township_id)
        if site:
            query = query.where(Site.code == site)
        if township:
            query = query.where(Township.code == township)
        if q:
            pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            query = query.where(or_(Member.name.like(pattern, escape="\\"),
                                    Member.member_no.like(pattern, escape="\\")))
        total = session.scalar(select(func.count()).select_from(query.subquery()))
        page = session.scalars(query.order_by(Member.member_no).limit(limit).offset(offset)).all()
        items = [_member_json(session, m, include_card) for m in page]
    return {"members": items, "total": total, "limit": limit, "offset": offset}


def update_site(services: Services, code: str, changes: Mapping[str, Any], actor: str) -> dict[str, Any]:
    """Rename a site or move it to another township (its groups follow); 404 when there is no such site."""
    _only(changes, ("name", "township"))
    with services.db.session() as session:
        org = _Org(session)
        site = org.sites.get(code)
        if site is None:
            raise ApiError(404, "site_not_found", f"no site with code {code!r}; see GET /api/v1/sites")
        try:
            name = check_name(_text(changes, "name"), "name") if "name" in changes else site.name
        except FieldError as exc:
            raise _api_field(exc) from None
        township = _township_of(org, _text(changes, "township")) if "township" in changes else site.township
        before = {"name": site.name, "township": site.township.code}
        _, _, changed = org.site(code, name, township)
        session.flush()
        session.refresh(site)
        if changed:
            _audit(session, services, actor, "org.site.update", code,
                   {"before": before, "after": {"name": site.name, "township": township.code}})
        return _site_json(site, session.scalar(select(func.count(Member.id)).where(Member.site_id == site.id)))


def create_group(services: Services, fields: Mapping[str, Any], actor: str) -> dict[str, Any]:
    """Create a group (key, name, kind, optional township); 409 when the key is taken."""
    _only(fields, ("key", "name", "kind", "township"))
    for name in ("key", "name", "kind"):
        if name not in fields:
            raise ApiError(422, "field_invalid", f"{name} is missing; a group needs key, name and kind", field=name)
    try:
        kind = check_kind(_text(fields, "kind"))
        key = check_group_key(_text(fields, "key"), "key", kind)
        name = check_name(_text(fields, "name"), "name")
    except FieldError as exc:
        raise _api_field(exc) from None
    with services.db.session() as session:
        org = _Org(session)
        if key in org.groups:
            raise ApiError(409, "group_exists", f"group {key!r} already exists; pick another key")
        township = _township_of(org, _text(fields, "township")) if fields.get("township") else None
        group, _, _ = org.group(key, name, kind, township.id if township else None)
        _audit(session, services, actor, "org.group.create", key, {"name": name, "kind": kind})
        return {"key": group.key, "name": group.name, "kind": group.kind,
                "township": township.code if township else None, "sites": 0, "devices": 0, "members": 0}


MEMBER_FIELDS = ("name", "branch", "site", "card_token", "joined", "left", "flags", "groups")


def _member_changes(org: _Org, member: Member, changes: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    """The checked attribute values of a member edit and its group keys (None when not given)."""
    values: dict[str, Any] = {}
    keys = None
    if "name" in changes:
        values["name"] = check_name(_text(changes, "name"), "name")
    if "branch" in changes:
        values["branch"] = check_name(_text(changes, "branch"), "branch", BRANCH_LIMIT, False)
    if "site" in changes:
        code = check_code(_text(changes, "site"), "site")
        if code not in org.sites:
            raise FieldError("site", f"no site with code {code!r}; see GET /api/v1/sites")
        values["site_id"] = org.sites[code].id
    if "card_token" in changes:
        values["card_token"] = check_card(_text(changes, "card_token"))
    for name, attribute in (("joined", "joined_on"), ("left", "left_on")):
        if name in changes:
            values[attribute] = check_date(_text(changes, name), name)
    joined, left = values.get("joined_on", member.joined_on), values.get("left_on", member.left_on)
    if joined and left and left < joined:
        raise FieldError("left", f"left {left.isoformat()} is before joined {joined.isoformat()}")
    if "flags" in changes:
        values["flags"] = check_flags(changes["flags"] or [])
    if "groups" in changes:
        keys = check_group_refs(split_keys(changes["groups"] or []), {k: g.kind for k, g in org.groups.items()})
    return values, keys


def update_member(services: Services, member_id: str, changes: Mapping[str, Any], actor: str,
                  include_card: bool = True) -> dict[str, Any]:
    """Change a member's fields and branch or special groups; 404 when unknown, 422 naming a bad field."""
    _only(changes, MEMBER_FIELDS)
    with services.db.session() as session:
        org = _Org(session)
        member = session.scalar(select(Member).where(Member.member_no == member_id))
        if member is None:
            raise ApiError(404, "member_not_found", f"no member {member_id!r}; see GET /api/v1/members")
        try:
            values, keys = _member_changes(org, member, changes)
        except FieldError as exc:
            raise _api_field(exc) from None
        card = values.get("card_token")
        if card and session.scalar(select(Member.member_no).where(Member.card_token == card,
                                                                  Member.id != member.id)):
            raise ApiError(409, "card_taken", f"card {card!r} belongs to another member; give them another "
                                              "card first", field="card_token")
        changed = _assign(member, **values)
        session.flush()
        changed = _sync_member_groups(org, member, keys, _member_links(session, [member.id]).get(member.id, {})) \
            or changed
        if changed:
            member.updated_at = services.clock()
            _audit(session, services, actor, "org.member.update", member_id, {"fields": sorted(changes)})
        session.flush()
        return _member_json(session, member, include_card)
