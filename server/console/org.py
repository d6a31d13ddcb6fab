"""Console pages for the organisation: townships, sites, groups and members, a member's page (lessons completed,
classes attended, radios held), and the CSV import with a preview of every bad row before anything is stored.

Every list, edit and import calls ``server.org.service`` (and ``server.attendance.reports`` for a member's record)
with the signed-in user's ``Scope``, as the API does: an operator sees and changes only their own township.
"""

from __future__ import annotations

import base64
import binascii

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from server.accounts.auth import current_actor, require
from server.attendance import reports
from server.console.pages import page_errors, page_language
from server.errors import Forbidden, Invalid, localise
from server.lessons.service import display_name
from server.org import service as org
from server.services import app_services
from server.validation import CSV_LIMIT

bp = Blueprint("console_org", __name__, url_prefix="/org")
page_errors(bp)
MEMBER_PAGE = 50


@bp.get("/townships")
@require("read.org")
def townships():
    """Every township with its number of sites."""
    return render_template("org_townships.html", townships=org.list_townships(app_services()))


@bp.get("/sites")
@require("read.org")
def sites():
    """Every site, or one township's (?township=), with its number of members."""
    township = request.args.get("township") or None
    return render_template("org_sites.html", sites=org.list_sites(app_services(), township), township=township,
                           townships=org.list_townships(app_services()))


@bp.post("/sites/<code>")
@require("org.write")
def edit_site(code: str):
    """Rename a site (or move it, for county staff) through the service the API's PATCH uses."""
    actor = current_actor()
    changes = {"name": request.form.get("name", "")}
    if request.form.get("township"):
        changes["township"] = request.form["township"]
    org.update_site(app_services(), code, changes, actor.name, actor.scope)
    flash(_("Site %(code)s is saved.", code=code), "ok")
    return redirect(url_for("console_org.sites", township=request.form.get("back") or None))


@bp.get("/groups")
@require("read.org")
def groups():
    """Every group (of one ?kind=), with what it holds, and the form for a new one."""
    kind = request.args.get("kind") or None
    return render_template("org_groups.html", groups=org.list_groups(app_services(), kind), kind=kind,
                           townships=org.list_townships(app_services()))


@bp.post("/groups")
@require("org.write")
def create_group():
    """Create a group in the user's scope."""
    actor = current_actor()
    fields = {k: request.form.get(k, "") for k in ("key", "name", "kind")}
    if request.form.get("township"):
        fields["township"] = request.form["township"]
    group = org.create_group(app_services(), fields, actor.name, actor.scope)
    flash(_("Group %(key)s is created.", key=group["key"]), "ok")
    return redirect(url_for("console_org.groups"))


@bp.get("/members")
@require("read.people")
def members():
    """A page of members of the user's scope, filtered by township, site and a search of name or number."""
    args = request.args
    page = args.get("page", "1")
    page = int(page) if page.isdigit() and 0 < int(page) < 100000 else 1
    actor = current_actor()
    result = org.list_members(app_services(), site=args.get("site") or None, township=args.get("township") or None,
                              q=args.get("q") or None, limit=MEMBER_PAGE, offset=(page - 1) * MEMBER_PAGE,
                              scope=actor.scope)
    return render_template("org_members.html", result=result, args=args, page=page,
                           pages=max(1, -(-result["total"] // MEMBER_PAGE)))


@bp.get("/members/<member_no>")
@require("read.people")
def member(member_no: str):
    """One member: details, this year's (or ?period=) lessons completed and classes attended, radios held."""
    services, actor = app_services(), current_actor()
    details = org.get_member(services, member_no, scope=actor.scope)
    period = request.args.get("period") or str(services.today().year)
    record = None
    if actor.may("read.attendance"):
        with services.db.session() as session:
            record = reports.member_record(session, member_no, period, services.rules, scope=actor.scope)
    radios = org.member_radios(services, member_no, actor.scope) if actor.may("read.devices") else None
    return render_template("org_member.html", member=details, record=record, radios=radios, period=period,
                           sites=org.list_sites(services, actor.scope.township))


@bp.post("/members/<member_no>")
@require("org.write")
def edit_member(member_no: str):
    """Change a member's name, branch, site, joined and left dates through the API's service."""
    actor = current_actor()
    changes = {k: request.form.get(k, "") for k in ("name", "branch", "site", "joined", "left") if k in request.form}
    org.update_member(app_services(), member_no, changes, actor.name, include_card=False, scope=actor.scope)
    flash(_("Member %(member)s is saved.", member=member_no), "ok")
    return redirect(url_for("console_org.member", member_no=member_no))


# ---------------------------------------------------------------------------------------------------------------
# Import: upload, preview (the whole import run and rolled back), confirm


def _uploaded() -> tuple[bytes, str]:
    """The CSV of this form: a new file, or the previewed one carried back in the confirm form."""
    upload = request.files.get("file")
    if upload is not None and upload.filename:
        data, name = upload.stream.read(CSV_LIMIT + 1), display_name(upload.filename)
    else:
        try:
            data = base64.b64decode(request.form.get("data", ""), validate=True)
        except (binascii.Error, ValueError):
            data = b""
        name = display_name(request.form.get("name", "")) or "import.csv"
    if not data:
        raise Invalid("file_required", _("Choose a CSV file to import."), field="file")
    if len(data) > CSV_LIMIT:
        raise Invalid("too_large", _("The CSV is over the %(value)s MB limit; split it into smaller files.",
                                     value=CSV_LIMIT // 1024 ** 2), field="file")
    return data, name


@bp.get("/import")
@require("org.write")
def import_form():
    """The import form: a sites, groups or members CSV, in UTF-8 or GBK."""
    return render_template("org_import.html", kinds=org.IMPORT_KINDS, kind=request.args.get("kind", "sites"))


@bp.post("/import")
@require("org.write")
def import_csv():
    """Preview an import (every bad row, or what it would create and change), or commit a previewed one."""
    services, actor = app_services(), current_actor()
    data, name = _uploaded()
    kind = request.form.get("kind") or None
    if kind not in (None, *org.IMPORT_KINDS):
        raise Invalid("field_invalid", _("Choose sites, groups or members."), field="kind")
    confirm = request.form.get("confirm") == "1"
    try:
        kind = kind or org.detect_kind(org.decode_csv(data))
        result = org.import_file(services, data, kind, actor.name, name, scope=actor.scope, preview=not confirm)
    except org.OrgImportError as exc:
        return render_template("org_import.html", kinds=org.IMPORT_KINDS, kind=kind or "sites", name=name,
                               errors=localise([e.to_dict() for e in exc.errors], page_language()),
                               summary=exc.summary(name).translate(page_language())), 422
    except Forbidden as exc:  # rows of another township: shown like bad rows, with the refusal's status
        if "rows" not in exc.extra:
            raise
        return render_template("org_import.html", kinds=org.IMPORT_KINDS, kind=kind or "sites", name=name,
                               errors=localise(exc.extra["rows"], page_language()),
                               summary=exc.localised(page_language())), exc.status
    if confirm:
        flash(_("%(name)s is imported: %(created)s created, %(updated)s changed, %(unchanged)s unchanged.",
                name=name, created=result.created, updated=result.updated, unchanged=result.unchanged), "ok")
        return redirect(url_for("console_org.sites" if kind == "sites" else
                                "console_org.groups" if kind == "groups" else "console_org.members"))
    return render_template("org_import.html", kinds=org.IMPORT_KINDS, kind=kind, name=name, preview=result,
                           data=base64.b64encode(data).decode())

