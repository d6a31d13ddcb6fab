"""Agent release and rollout API (admins only): releases, rollouts with each stage's live counts, and the admin's
pause, resume, retry-failed and cancel."""

from __future__ import annotations

from flask import Blueprint, jsonify

from server.accounts.auth import current_actor, require
from server.agent_releases import releases, rollouts
from server.api import json_body
from server.services import app_services

bp = Blueprint("agent_releases_api", __name__)


@bp.get("/agent-releases")
@require("agent.manage")
def list_releases():
    """Every registered agent release, newest version first."""
    return jsonify({"releases": releases.list_all(app_services())})


@bp.get("/agent-rollouts")
@require("agent.manage")
def list_rollouts():
    """Every rollout with its stages' live counts, newest first."""
    return jsonify({"rollouts": rollouts.list_all(app_services())})


@bp.post("/agent-rollouts")
@require("agent.manage")
def create_rollout():
    """Start a rollout: release, stages (kind, count or township, thresholds, time limit), auto_advance."""
    return jsonify(rollouts.create(app_services(), json_body(), current_actor().name)), 201


@bp.get("/agent-rollouts/<int:rollout_id>")
@require("agent.manage")
def show_rollout(rollout_id: int):
    """One rollout with its stages' live counts and the failed devices' reasons."""
    return jsonify(rollouts.show(app_services(), rollout_id))


@bp.post("/agent-rollouts/<int:rollout_id>/<action>")
@require("agent.manage")
def act(rollout_id: int, action: str):
    """pause, resume (also starts the next stage of a waiting rollout), retry-failed or cancel."""
    return jsonify(rollouts.act(app_services(), rollout_id, action, current_actor().name))
