"""Organisation API: list townships, sites, groups and members; import their CSVs; edit sites, groups, members."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from server import validation
from server.i18n import _l
from server.validation import CSV_LIMIT
from server.accounts.auth import current_actor, require
from server.api import json_body
from server.errors import ApiError
from server.lessons.service import display_name
from server.org import service as org
from server.services import app_services

bp = Blueprint("org_api", __name__)


def _csv_upload() -> tuple[bytes, str]:
    """The uploaded CSV's bytes and file name: multipart field 'file', or the raw body."""
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise ApiError(400, "file_required", _l("Send the CSV as the multipart field 'file'."))
        upload.stream.seek(0)
        data, name = upload.stream.read(CSV_LIMIT + 1), display_name(upload.filename)
    else:
        data, name = request.get_data(cache=False)[:CSV_LIMIT + 1], ""
    if len(data) > CSV_LIMIT:
        raise ApiError(413, "too_large", _l("The CSV is over the {value} MB limit; split it into smaller files.",
                                            value=CSV_LIMIT // 1024 ** 2))
    return data, name


@bp.get("/townships")
@require("read.org")
def townships():
    """Every township with its number of sites."""
    return jsonify({"townships": org.list_townships(app_services())})


@bp.get("/sites")
@require("read.org")
def sites():
    """Every site, or one township's (?township=CODE)."""
    return jsonify({"sites": org.list_sites(app_services(), request.args.get("township") or None)})


@bp.get("/groups")
@require("read.org")
def groups():
    """Every group, or one kind's (?kind=township|village|branch|special)."""
    return jsonify({"groups": org.list_groups(app_services(), request.args.get("kind") or None)})


@bp.get("/members")
@require("read.people")
def members():
    """A page of members (?site=&township=&q=&limit=&offset=) with the total; card tokens only for editors."""
    args = request.args
    rows = validation.paging(50, org.MEMBER_PAGE_LIMIT)
    page = org.list_members(app_services(), site=args.get("site") or None, township=args.get("township") or None,
                            q=args.get("q") or None, limit=rows.limit, offset=rows.offset,
                            include_card=current_actor().may("org.write"), scope=current_actor().scope)
    return jsonify(page)


@bp.post("/org/import")
@require("org.write")
def import_csv():
    """Import a sites, groups or members CSV (?kind=); 422 with every bad row, and then nothing is written."""
    data, name = _csv_upload()
    kind = request.args.get("kind") or None
    if kind is not None and kind not in org.IMPORT_KINDS:
        raise ApiError(422, "field_invalid", _l("kind {kind!r} is not one of {choices}",
                                                kind=kind, choices=', '.join(org.IMPORT_KINDS)),
                       field="kind")
    try:
        kind = kind or org.detect_kind(org.decode_csv(data))
        name = name or f"{kind}.csv"
        result = org.import_file(app_services(), data, kind, current_actor().name, name, scope=current_actor().scope)
    except org.OrgImportError as exc:
        raise ApiError(422, "csv_invalid", exc.summary(name or "the file"),
                       rows=[e.to_dict() for e in exc.errors]) from None
    return jsonify({"kind": kind, "created": result.created, "updated": result.updated,
                    "unchanged": result.unchanged})


@bp.post("/groups")
@require("org.write")
def create_group():
    """Create a group from JSON {key, name, kind, township}; 201."""
    actor = current_actor()
    return jsonify(org.create_group(app_services(), json_body(), actor.name, actor.scope)), 201


@bp.patch("/sites/<code>")
@require("org.write")
def update_site(code: str):
    """Rename a site or move it to another township (JSON {name, township})."""
    actor = current_actor()
    return jsonify(org.update_site(app_services(), code, json_body(), actor.name, actor.scope))


@bp.patch("/members/<member_id>")
@require("org.write")
def update_member(member_id: str):
    """Change a member (JSON with any of name, branch, site, card_token, joined, left, flags, groups)."""
    actor = current_actor()
    return jsonify(org.update_member(app_services(), member_id, json_body(), actor.name, scope=actor.scope))
