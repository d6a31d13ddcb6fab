"""Programme API: drafts, new versions, the publish preview and publish; channels with their manifests."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import select

from playlists.m3u import to_m3u8
from playlists.manifest import parse_manifest
from server import validation
from server.accounts.auth import current_actor, require
from server.api import json_body
from server.errors import ApiError
from server.i18n import _l
from server.programmes import service as programmes, publish
from server.programmes.models import Channel, Programme
from server.services import app_services

bp = Blueprint("programmes_api", __name__)




def _show(ref):
    with app_services().db.session() as session:
        return programmes.programme_json(programmes.get(session, ref))


@bp.get("/programmes")
@require("read.lessons")
def list_programmes():
    """Every programme version, newest first."""
    with app_services().db.session() as session:
        rows = session.scalars(select(Programme).order_by(Programme.code, Programme.version.desc())).all()
        return jsonify({"programmes": [programmes.programme_json(p) for p in rows]})


@bp.post("/programmes")
@require("programmes.write")
def create():
    """Create a draft: code, title, valid_from, valid_until, items, slots."""
    return jsonify(_show(programmes.create(app_services(), json_body(), current_actor().name))), 201


@bp.get("/programmes/<ref>")
@require("read.lessons")
def show(ref: str):
    """One programme by id, or by code (its newest version)."""
    return jsonify(_show(ref))


@bp.patch("/programmes/<ref>")
@require("programmes.write")
def edit(ref: str):
    """Edit a draft; 409 programme_frozen once published."""
    programmes.update(app_services(), ref, json_body(), current_actor().name)
    return jsonify(_show(ref))


@bp.post("/programmes/<ref>/new-version")
@require("programmes.write")
def new_version(ref: str):
    """A draft copy of a published programme; publishing it supersedes the old version."""
    return jsonify(_show(programmes.new_version(app_services(), ref, current_actor().name))), 201


@bp.get("/programmes/<ref>/preview")
@require("read.lessons")
def preview(ref: str):
    """What publishing would do: devices affected and awaiting enrolment, items added and removed, bytes each
    device downloads, and when devices fetch it (their download window; at once with ?urgent=1)."""
    return jsonify(publish.preview(app_services(), ref, urgent=bool(validation.query_flag("urgent"))))


@bp.post("/programmes/<ref>/publish")
@require("programmes.write")
def do_publish(ref: str):
    """Publish a draft: sign the channels' manifests and tell every device; ?urgent=1 ("download now") makes
    devices fetch it at once instead of in their download window."""
    return jsonify(publish.publish(app_services(), ref, current_actor().name,
                                   urgent=bool(validation.query_flag("urgent"))))


@bp.get("/channels")
@require("read.lessons")
def channels():
    """Every channel with its audience and manifest version."""
    with app_services().db.session() as session:
        rows = session.scalars(select(Channel).order_by(Channel.id)).all()
        return jsonify({"channels": [{"id": c.id, "kind": c.kind, "language": c.language, "groups": c.groups,
                                      "manifest_version": c.manifest_version,
                                      "updated_at": c.updated_at.isoformat()} for c in rows]})


def _manifest(channel: str) -> bytes:
    with app_services().db.session() as session:
        row = session.get(Channel, channel)
        if row is None or not row.manifest:
            raise ApiError(404, "no_such_channel", _l("Channel {channel} has no published manifest.", channel=channel))
        return row.manifest


@bp.get("/channels/<channel>/manifest.json")
@require("read.lessons")
def manifest(channel: str):
    """The channel's current manifest (devices fetch the signed copy from /tuf/targets/)."""
    return Response(_manifest(channel), mimetype="application/json")


@bp.get("/channels/<channel>/playlist.m3u8")
@require("read.lessons")
def m3u8(channel: str):
    """The channel as an M3U8 playlist for plain players."""
    services = app_services()
    base = (services.settings.media_base_url or services.settings.web_url).rstrip("/") + "/"
    text = to_m3u8(parse_manifest(_manifest(channel)), base)
    return Response(text, mimetype="application/vnd.apple.mpegurl",
                    headers={"Content-Disposition": f'attachment; filename="{channel}.m3u8"'})
