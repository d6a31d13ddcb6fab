"""Console pages for admins: agent releases and their staged rollouts, each stage's counts refreshed live (htmx), a
form for a new rollout, and the pause, resume (or start the next stage), retry-failed and cancel actions, each
confirmed first.

Every rule (who may, what a stage may be, which action applies in which state) is
``server.agent_releases.rollouts``'s, exactly as the API and the CLI use it: the form only turns fields into the
service's request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from server.accounts.auth import current_actor, require
from server.agent_releases import releases, rollouts
from server.agent_releases.models import STAGE_KINDS
from server.console.fleet_words import rollout_state_name
from server.console.pages import page_errors
from server.org.models import Township
from server.services import app_services

bp = Blueprint("console_rollouts", __name__, url_prefix="/admin")
page_errors(bp)
FORM_STAGES = 3  # rows the form shows; "Add a stage" shows more, up to rollouts.MAX_STAGES (as the API takes)

KIND_NAMES = {"devices": _l("devices"), "township": _l("a township"), "county": _l("the rest of the county")}


def action_names(state: str) -> dict[str, str]:
    """The label of each action the service allows in STATE ("resume" of a waiting rollout starts its next stage)."""
    names = {"pause": _("Pause"), "resume": _("Start the next stage") if state == "waiting" else _("Resume"),
             "retry-failed": _("Retry the failed devices"), "cancel": _("Cancel the rollout")}
    return {action: names[action] for action in rollouts.ACTIONS if state in rollouts.ALLOWED_FROM[action]}


def _number(raw: str) -> Any:
    """A form field as the service's whole number, or the text as typed (which the service refuses by name)."""
    raw = raw.strip()
    return int(raw) if raw.isdigit() else raw


def stages_from_form(form) -> list[dict[str, Any]]:
    """The stages the form names, in order (rows left without a kind are skipped)."""
    stages = []
    for i in range(rollouts.MAX_STAGES):
        kind = form.get(f"kind-{i}", "")
        if not kind:
            continue
        stage: dict[str, Any] = {"kind": kind}
        for field in ("success_pct", "error_pct", "time_limit_min"):
            if form.get(f"{field}-{i}", "").strip():
                stage[field] = _number(form[f"{field}-{i}"])
        if kind == "devices":
            stage["count"] = _number(form.get(f"count-{i}", ""))
        if kind == "township":
            stage["township"] = form.get(f"township-{i}", "")
        stages.append(stage)
    return stages


def _labels() -> dict[str, Any]:
    return {"kind_names": {k: str(v) for k, v in KIND_NAMES.items()}}


@bp.get("/rollouts")
@require("agent.manage")
def index():
    """Every release and every rollout (with its stages' counts), and the form for a new rollout."""
    services = app_services()
    with services.db.session() as session:
        townships = session.execute(select(Township.code, Township.name).order_by(Township.code)).all()
    return render_template("rollouts.html", releases=releases.list_all(services),
                           rollouts=rollouts.list_all(services), townships=townships, kinds=STAGE_KINDS,
                           form_stages=FORM_STAGES, max_stages=rollouts.MAX_STAGES, **_labels())


@bp.post("/rollouts")
@require("agent.manage")
def create():
    """Start a rollout from the form, through the same service as the API."""
    form = request.form
    body = {"release": form.get("release", ""), "stages": stages_from_form(form),
            "auto_advance": form.get("auto_advance") == "1", "allow_downgrade": form.get("allow_downgrade") == "1"}
    rollout = rollouts.create(app_services(), body, current_actor().name)
    flash(_("Rollout %(id)s of %(version)s started.", id=rollout["id"], version=rollout["release"]), "ok")
    return redirect(url_for("console_rollouts.show", rollout_id=rollout["id"]))


@bp.get("/rollouts/<int:rollout_id>")
@require("agent.manage")
def show(rollout_id: int):
    """One rollout: its stages with live counts, the failed devices' reasons and the actions that apply."""
    rollout = rollouts.show(app_services(), rollout_id)
    return render_template("rollout.html", r=rollout, actions=action_names(rollout["state"]),
                           created=datetime.fromisoformat(rollout["created_at"]), **_labels())


@bp.get("/rollouts/<int:rollout_id>/live")
@require("agent.manage")
def live(rollout_id: int):
    """The stages block alone, polled by the rollout page."""
    rollout = rollouts.show(app_services(), rollout_id)
    return render_template("_rollout_live.html", r=rollout, actions=action_names(rollout["state"]), **_labels())


@bp.post("/rollouts/<int:rollout_id>/<action>")
@require("agent.manage")
def act(rollout_id: int, action: str):
    """Ask first, then pause, resume, retry the failed devices or cancel, through the service."""
    services = app_services()
    rollouts.check_action(action)
    if request.form.get("confirm") != "yes":
        rollout = rollouts.show(services, rollout_id)
        label = action_names(rollout["state"]).get(action, action)  # not allowed now: the service says why on confirm
        return render_template("rollout_confirm.html", r=rollout, action=action, label=label, **_labels())
    rollout = rollouts.act(services, rollout_id, action, current_actor().name)
    flash(_("Rollout %(id)s is now %(state)s.", id=rollout["id"],
            state=rollout_state_name(rollout["state"])), "ok")
    return redirect(url_for("console_rollouts.show", rollout_id=rollout_id))
