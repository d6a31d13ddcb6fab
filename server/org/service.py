"""Organisation service: import townships, sites, groups and members from staff CSVs, list and edit them.

A file is read and checked by server.org.csv_rows first and written here in one transaction only when every row is
good: nothing is ever half-imported. Imports upsert by code or member id, so importing the same file again
changes nothing.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any, Callable, Mapping, Optional

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from server.accounts.scope import COUNTY, Scope
from server.audit import AuditEntry
from server.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from server.i18n import _l
from server.org import cards
from server.org.csv_rows import (BRANCH_LIMIT, BRANCH_PREFIX, MANAGED_MEMBER_KINDS, FieldError, ImportResult,
                                 MemberContext, MemberRow, Table, check_card, check_code, check_date, check_flags,
                                 check_group_key, check_group_refs, check_groups, check_kind, check_members, check_name,
                                 check_sites, decode_csv, read_table, split_keys)
from server.org.csv_rows import IMPORT_KINDS, OrgImportError, RowError, detect_kind
from server.devices.models import Device, DeviceAssignment
from server.org.models import Group, GroupLink, Member, Site, Township
from server.training.models import MemberRole
from server.services import Services

# What callers use: the database side defined here, and the CSV reading they reach through this module.
__all__ = ["DEFAULT_SITE", "DEFAULT_TOWNSHIP", "IMPORT_KINDS", "ImportResult", "MEMBER_FIELDS", "MEMBER_PAGE_LIMIT",
           "OrgImportError", "branch_key", "create_group", "decode_csv", "default_site", "detect_kind",
           "get_member", "import_file", "member_radios", "import_groups", "import_members", "import_sites", "list_groups",
           "list_members", "list_sites", "list_townships", "update_member", "update_site"]

DEFAULT_TOWNSHIP = ("county", "县直属")
DEFAULT_SITE = ("county", "县直属站点")


class _Counter:
    def __init__(self) -> None:
        self.counts = {"created": 0, "updated": 0, "unchanged": 0}

    def add(self, created: bool, changed: bool) -> None:
        self.counts["created" if created else "updated" if changed else "unchanged"] += 1

    def result(self) -> ImportResult:
        return ImportResult(**self.counts)


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


class _Preview(Exception):
    """Raised inside an import's transaction to roll a preview back, carrying what it would have done."""

    def __init__(self, result: ImportResult):
        super().__init__("preview")
        self.result = result


def _import(services: Services, data: bytes, kind: str, actor: str, source: str,
            write: Callable[[Session, Table], ImportResult], preview: bool = False) -> ImportResult:
    table = read_table(decode_csv(data), kind)
    try:
        with services.db.session() as session:
            result = write(session, table)
            if preview:  # the whole import ran, every check included; undo it and say what it would do
                raise _Preview(result)
            counts = {"created": result.created, "updated": result.updated, "unchanged": result.unchanged}
            _audit(session, services, actor, f"org.import.{kind}", source, counts)
    except _Preview as done:
        return done.result
    return result


def _refuse_rows(scope: Scope, outside: list[tuple[int, str, str]]) -> None:
    """403 other_township naming each (line, column, what) of a file that lies outside SCOPE's township, with the
    rows in the error's ``rows`` (the API's shape for a CSV's bad rows); nothing of the file is stored."""
    if outside:
        rows = [RowError(line, column, _l("{what} belongs to another township; an operator of {township} imports "
                                          "only {township}'s rows", what=what, township=scope.township))
                for line, column, what in outside]
        raise Forbidden("other_township",
                        _l("Lines {lines} name another township's sites, members or groups; an operator of "
                           "{township} imports only {township}'s rows. Nothing was imported.",
                           lines=", ".join(str(r.line) for r in rows), township=scope.township),
                        rows=[r.to_dict() for r in rows])


def import_sites(services: Services, data: bytes, actor: str, source: str = "", *, scope: Scope = COUNTY,
                 preview: bool = False) -> ImportResult:
    """Upsert the townships and sites of a sites CSV and their township and village groups; all or nothing. Every
    row's township, and the township any existing site has now, must be in SCOPE."""

    def write(session: Session, table: Table) -> ImportResult:
        rows = check_sites(table)
        org, counter, touched = _Org(session), _Counter(), set()
        _refuse_rows(scope, [(r.line, "township_code", f"Township {r.township_code}") for r in rows
                             if not scope.covers(r.township_code)]
                     + [(r.line, "site_code", f"Site {r.site_code}") for r in rows
                        if r.site_code in org.sites and not scope.covers(org.sites[r.site_code].township.code)])
        for row in rows:
            township, t_created, t_changed = org.township(row.township_code, row.township_name)
            first_mention = row.township_code not in touched
            touched.add(row.township_code)
            site, created, changed = org.site(row.site_code, row.site_name, township)
            counter.add(created, changed or (first_mention and (t_created or t_changed)))
        return counter.result()

    return _import(services, data, "sites", actor, source, write, preview)


def import_groups(services: Services, data: bytes, actor: str, source: str = "", *, scope: Scope = COUNTY,
                  preview: bool = False) -> ImportResult:
    """Upsert the groups of a groups CSV (special groups such as 海上支部, retirees, migrant members). An operator's
    (SCOPE's) groups must all be of their township, as must any existing group a row changes."""

    def write(session: Session, table: Table) -> ImportResult:
        org = _Org(session)
        rows = check_groups(table, frozenset(org.townships))
        town_of = {t.id: code for code, t in org.townships.items()}
        _refuse_rows(scope, [(r.line, "township_code", f"Group {r.key}") for r in rows
                             if not scope.is_county and (not scope.covers(r.township_code or None) or (
                                 r.key in org.groups and not scope.covers(town_of.get(org.groups[r.key].township_id))))])
        counter = _Counter()
        for row in rows:
            township_id = org.townships[row.township_code].id if row.township_code else None
            _group, created, changed = org.group(row.key, row.name, row.kind, township_id)
            counter.add(created, changed)
        return counter.result()

    return _import(services, data, "groups", actor, source, write, preview)


def import_members(services: Services, data: bytes, actor: str, source: str = "", *, scope: Scope = COUNTY,
                   preview: bool = False) -> ImportResult:
    """Upsert the members of a members CSV with their branch and special groups; all or nothing. Each member's
    site, the site an existing member is at now, and every group named must be in SCOPE."""

    def write(session: Session, table: Table) -> ImportResult:
        org = _Org(session)
        members = {m.member_no: m for m in session.scalars(select(Member))}
        known = MemberContext(frozenset(org.sites), {k: g.kind for k, g in org.groups.items()},
                              _CardOwners(services.card_key,
                                          {m.card_token: no for no, m in members.items() if m.card_token}))
        rows = check_members(table, known)
        if not scope.is_county:
            town_of = {t.id: code for code, t in org.townships.items()}
            site_town = {code: site.township.code for code, site in org.sites.items()}
            site_by_id = {site.id: code for code, site in org.sites.items()}
            outside = []
            for r in rows:
                current = members.get(r.member_no)
                if not scope.covers(site_town[r.site_code]):
                    outside.append((r.line, "site_code", f"Site {r.site_code}"))
                elif current is not None and not scope.covers(site_town[site_by_id[current.site_id]]):
                    outside.append((r.line, "member_id", f"Member {r.member_no}"))
                for key in r.groups or ():
                    group = org.groups.get(key)
                    if group is not None and group.township_id is not None \
                            and not scope.covers(town_of.get(group.township_id)):
                        outside.append((r.line, "groups", f"Group {key}"))
            _refuse_rows(scope, outside)
        return _write_members(services, session, org, members, rows)

    return _import(services, data, "members", actor, source, write, preview)


class _CardOwners(Mapping[str, str]):
    """Whose card each token is, looked up by the token a file gives, over the stored digests."""

    def __init__(self, key: bytes, owners: dict[str, str]):
        self.key, self.owners = key, owners

    def __getitem__(self, token: str) -> str:
        return self.owners[cards.digest(self.key, token)]

    def __iter__(self):
        return iter(self.owners)

    def __len__(self) -> int:
        return len(self.owners)


def _write_members(services: Services, session: Session, org: _Org, members: dict[str, Member],
                   rows: list[MemberRow]) -> ImportResult:
    now = services.clock()
    # Cards are stored as keyed digests (server/org/cards.py), never as the token the file gives.
    rows = [dataclasses.replace(r, card_token=cards.digest(services.card_key, r.card_token)) if r.card_token else r
            for r in rows]
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
    for row in rows:
        if row.role and _set_role(session, members[row.member_no], row.role, row.role_from or services.today()):
            changed.add(row.member_no)
    counter = _Counter()
    for row in rows:
        if row.member_no in changed:
            members[row.member_no].updated_at = now
        counter.add(row.member_no in created, row.member_no in changed)
    return counter.result()


def _set_role(session: Session, member: Member, role: str, since: date) -> bool:
    """Record that MEMBER holds ROLE from SINCE (their role history sets their study-hour quota); whether it changed.

    A role equal to the one held on SINCE changes nothing, so importing the same file again adds no row."""
    history = session.scalars(select(MemberRole).where(MemberRole.member_id == member.id)
                              .order_by(MemberRole.from_date)).all()
    held = [r for r in history if r.from_date <= since]
    if (held[-1].role if held else "member") == role:
        return False
    same_day = next((r for r in history if r.from_date == since), None)
    if same_day is not None:
        same_day.role = role
    else:
        session.add(MemberRole(member_id=member.id, role=role, from_date=since))
    return True


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


def import_file(services: Services, data: bytes, kind: str, actor: str, source: str = "", *,
                scope: Scope = COUNTY, preview: bool = False) -> ImportResult:
    """Import a CSV of the given kind (sites, groups or members) within SCOPE. With PREVIEW the whole import runs,
    every check included, and is rolled back: the counts it would give, or OrgImportError with every bad row."""
    importer = {"sites": import_sites, "groups": import_groups, "members": import_members}[kind]
    return importer(services, data, actor, source, scope=scope, preview=preview)


# ---------------------------------------------------------------------------------------------------------------
# Listing and editing (the API and the CLI)

MEMBER_PAGE_LIMIT = 500


def _api_field(exc: FieldError) -> DomainError:
    return Invalid("field_invalid", exc.message, field=exc.field)


def _text(changes: Mapping[str, Any], name: str) -> str:
    value = changes[name]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Invalid("field_invalid", _l("{name} must be a string", name=name), field=name)
    return value


def _only(changes: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(changes) - set(allowed))
    if unknown:
        raise Invalid("unknown_field", _l("cannot set {choices}; the fields are {choices2}",
                                          choices=', '.join(unknown), choices2=', '.join(allowed)),
                      field=unknown[0])


def _township_of(org: _Org, code: str, missing: type[DomainError] = Invalid) -> Township:
    township = org.townships.get(code)
    if township is None:
        raise missing("township_not_found",
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
            _township_of(_Org(session), township, NotFound)
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
        # Only the card's digest is stored: it tells staff which card is registered without giving its token away.
        body["card_token"] = member.card_token
    return body


def list_members(services: Services, site: Optional[str] = None, township: Optional[str] = None,
                 q: Optional[str] = None, limit: int = 50, offset: int = 0,
                 include_card: bool = False, scope: Scope = COUNTY) -> dict[str, Any]:
    """A page of members by member id, filtered by site, township and a search of name or id, with the total;
    only SCOPE's members (an operator asking for another township is refused)."""
    if not 1 <= limit <= MEMBER_PAGE_LIMIT or offset < 0:
        raise Invalid("field_invalid", _l("limit is 1-{member_page_limit} and offset 0 or more",
                                          member_page_limit=MEMBER_PAGE_LIMIT),
                      field="limit" if not 1 <= limit <= MEMBER_PAGE_LIMIT else "offset")
    township = scope.township_filter(township)
    with services.db.session() as session:
        query = select(Member).join(Site, Site.id == Member.site_id).join(Township, Township.id == Site.township_id)
        if site:
            query = query.where(Site.code == site)
        if township:
            query = query.where(Township.code == township)
        if q:
            pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            # ilike: PostgreSQL's LIKE tells m001 from M001, SQLite's does not; a search means the same on both.
            query = query.where(or_(Member.name.ilike(pattern, escape="\\"),
                                    Member.member_no.ilike(pattern, escape="\\")))
        total = session.scalar(select(func.count()).select_from(query.subquery()))
        page = session.scalars(query.order_by(Member.member_no).limit(limit).offset(offset)).all()
        items = [_member_json(session, m, include_card) for m in page]
    return {"members": items, "total": total, "limit": limit, "offset": offset}


def update_site(services: Services, code: str, changes: Mapping[str, Any], actor: str,
                scope: Scope = COUNTY) -> dict[str, Any]:
    """Rename a site or move it to another township (its groups follow); 404 when there is no such site. The
    site and the township it moves to must be in SCOPE."""
    _only(changes, ("name", "township"))
    with services.db.session() as session:
        org = _Org(session)
        site = org.sites.get(code)
        if site is None:
            raise NotFound("site_not_found", _l("no site with code {code!r}; see GET /api/v1/sites", code=code))
        scope.check_site(site)
        try:
            name = check_name(_text(changes, "name"), "name") if "name" in changes else site.name
        except FieldError as exc:
            raise _api_field(exc) from None
        township = _township_of(org, _text(changes, "township")) if "township" in changes else site.township
        scope.check_township(township)
        before = {"name": site.name, "township": site.township.code}
        _, _, changed = org.site(code, name, township)
        session.flush()
        session.refresh(site)
        if changed:
            _audit(session, services, actor, "org.site.update", code,
                   {"before": before, "after": {"name": site.name, "township": township.code}})
        return _site_json(site, session.scalar(select(func.count(Member.id)).where(Member.site_id == site.id)))


def create_group(services: Services, fields: Mapping[str, Any], actor: str, scope: Scope = COUNTY) -> dict[str, Any]:
    """Create a group (key, name, kind, optional township, which must be in SCOPE); 409 when the key is taken."""
    _only(fields, ("key", "name", "kind", "township"))
    for name in ("key", "name", "kind"):
        if name not in fields:
            raise Invalid("field_invalid", _l("{name} is missing; a group needs key, name and kind",
                                              name=name), field=name)
    try:
        kind = check_kind(_text(fields, "kind"))
        key = check_group_key(_text(fields, "key"), "key", kind)
        name = check_name(_text(fields, "name"), "name")
    except FieldError as exc:
        raise _api_field(exc) from None
    with services.db.session() as session:
        org = _Org(session)
        if key in org.groups:
            raise Conflict("group_exists", _l("group {key!r} already exists; pick another key", key=key))
        township = _township_of(org, _text(fields, "township")) if fields.get("township") else None
        if not scope.is_county and township is None:
            raise scope.refuse("A county-wide group")
        if township is not None:
            scope.check_township(township)
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
            raise FieldError("site", _l("no site with code {code!r}; see GET /api/v1/sites", code=code))
        values["site_id"] = org.sites[code].id
    if "card_token" in changes:
        values["card_token"] = check_card(_text(changes, "card_token"))  # hashed by the caller, once checked
    for name, attribute in (("joined", "joined_on"), ("left", "left_on")):
        if name in changes:
            values[attribute] = check_date(_text(changes, name), name)
    joined, left = values.get("joined_on", member.joined_on), values.get("left_on", member.left_on)
    if joined and left and left < joined:
        raise FieldError("left", _l("left {left} is before joined {joined}", left=left.isoformat(),
                                    joined=joined.isoformat()))
    if "flags" in changes:
        values["flags"] = check_flags(changes["flags"] or [])
    if "groups" in changes:
        keys = check_group_refs(split_keys(changes["groups"] or []), {k: g.kind for k, g in org.groups.items()})
    return values, keys


def update_member(services: Services, member_id: str, changes: Mapping[str, Any], actor: str,
                  include_card: bool = True, scope: Scope = COUNTY) -> dict[str, Any]:
    """Change a member's fields and branch or special groups; 404 when unknown, 422 naming a bad field. The member,
    their new site and their groups must be in SCOPE."""
    _only(changes, MEMBER_FIELDS)
    with services.db.session() as session:
        org = _Org(session)
        member = session.scalar(select(Member).where(Member.member_no == member_id))
        if member is None:
            raise NotFound("member_not_found", _l("no member {member_id!r}; see GET /api/v1/members",
                                                  member_id=member_id))
        scope.check_member(session, member)
        try:
            values, keys = _member_changes(org, member, changes)
        except FieldError as exc:
            raise _api_field(exc) from None
        if "site_id" in values:
            scope.check_site(session.get(Site, values["site_id"]))
        for key in keys or ():
            scope.check_group(session, org.groups[key])
        card = values.get("card_token")
        if card:
            values["card_token"] = cards.digest(services.card_key, card)
            if session.scalar(select(Member.member_no).where(Member.card_token == values["card_token"],
                                                             Member.id != member.id)):
                raise Conflict("card_taken", _l("card {card!r} belongs to another member; give them another card first",
                                                card=card), field="card_token")
        changed = _assign(member, **values)
        session.flush()
        changed = _sync_member_groups(org, member, keys, _member_links(session, [member.id]).get(member.id, {})) \
            or changed
        if changed:
            member.updated_at = services.clock()
            _audit(session, services, actor, "org.member.update", member_id, {"fields": sorted(changes)})
        session.flush()
        return _member_json(session, member, include_card)


def get_member(services: Services, member_id: str, include_card: bool = False,
               scope: Scope = COUNTY) -> dict[str, Any]:
    """One member as the member list shows them; 404 when unknown, 403 outside SCOPE."""
    with services.db.session() as session:
        member = session.scalar(select(Member).where(Member.member_no == member_id))
        if member is None:
            raise NotFound("member_not_found", _l("no member {member_id!r}; see GET /api/v1/members",
                                                  member_id=member_id))
        scope.check_member(session, member)
        return _member_json(session, member, include_card)


def member_radios(services: Services, member_id: str, scope: Scope = COUNTY) -> list[dict[str, Any]]:
    """The radios a member (in SCOPE) has held, newest hand-over first: uid, name, from and until (None: still)."""
    with services.db.session() as session:
        member = session.scalar(select(Member).where(Member.member_no == member_id))
        if member is None:
            raise NotFound("member_not_found", _l("no member {member_id!r}; see GET /api/v1/members",
                                                  member_id=member_id))
        scope.check_member(session, member)
        rows = session.execute(select(Device.uid, Device.name, DeviceAssignment.from_date, DeviceAssignment.until_date)
                               .join(Device, Device.id == DeviceAssignment.device_id)
                               .where(DeviceAssignment.member_id == member.id)
                               .order_by(DeviceAssignment.from_date.desc(), Device.uid)).all()
    return [{"uid": uid, "name": name, "from": start, "until": until} for uid, name, start, until in rows]
