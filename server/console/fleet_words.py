"""How the fleet pages say the machine words devices and rollouts report (sync states, event types, command names,
results and messages, update results, device states, rollout states and reasons) in the reader's language.

One vocabulary per kind of word, each in one table here, used by the devices table, a device's page, the home page
and the rollout pages alike. A word no table knows yet (a newer agent's) is shown as it came, never refused: the
pages must not break because a device learnt a new word. The templates keep the machine word beside the label (in a
``title`` or a data attribute) for support staff who read logs.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Optional

from flask import Flask
from flask_babel import gettext as _, lazy_gettext as _l, lazy_pgettext
from markupsafe import Markup, escape

# The device's own view of its fleet state (server.devices.fleet.STATES) and its enrolment state.
DEVICE_STATES = {"online": _l("online"), "offline": _l("offline"), "offline_long": _l("offline for long"),
                 "stale": _l("stale metadata"), "sync_failed": _l("sync failed"),
                 "behind": _l("behind the programme"), "low_battery": _l("low battery"),
                 "storage_low": _l("storage nearly full"), "pending": _l("pending"), "revoked": _l("revoked"),
                 "enrolled": _l("enrolled")}
# What the agent reports as "sync" (device_agent.agent: checking, then idle, deferred or error); the others are
# words an agent may report in a later version.
SYNC_STATES = {"idle": lazy_pgettext("sync", "idle"), "checking": lazy_pgettext("sync", "checking"),
               "downloading": lazy_pgettext("sync", "downloading"), "deferred": lazy_pgettext("sync", "deferred"),
               "error": lazy_pgettext("sync", "error"), "failed": lazy_pgettext("sync", "failed"),
               "switching": lazy_pgettext("sync", "switching")}
# device_agent.events: the types of event a device sends.
EVENT_TYPES = {"play": lazy_pgettext("event", "play"), "checkin": lazy_pgettext("event", "check-in"),
               "command": lazy_pgettext("event", "command"), "error": lazy_pgettext("event", "error"),
               "update": lazy_pgettext("event", "agent update")}
# device_agent.commands.DISPATCH: the commands staff send (also the console's buttons and its notices).
COMMANDS = {"resync": _l("Resync"), "set-volume": _l("Set volume"), "revoke": _l("Revoke"), "play-now": _l("Play now"),
            "stop": _l("Stop"), "reboot": lazy_pgettext("command", "Reboot"),
            "check-update": lazy_pgettext("command", "Check for an agent update")}
# device_agent.commands.handle: a command's outcome.
COMMAND_RESULTS = {"done": lazy_pgettext("command", "done"), "failed": lazy_pgettext("command", "failed"),
                   "expired": lazy_pgettext("command", "expired"), "unknown": lazy_pgettext("command", "unknown"),
                   "malformed": lazy_pgettext("command", "malformed")}
# device_agent.events.update: an agent update's step.
UPDATE_RESULTS = {"installed": lazy_pgettext("update", "installed"), "healthy": lazy_pgettext("update", "healthy"),
                  "refused": lazy_pgettext("update", "refused"), "failed": lazy_pgettext("update", "failed"),
                  "rolled_back": lazy_pgettext("update", "rolled back")}
# device_agent.agent: the codes of error events.
ERROR_CODES = {"sync_failed": _l("sync failed"), "play_failed": lazy_pgettext("error", "playing failed"),
               "message_failed": lazy_pgettext("error", "a server message could not be handled")}
# server.agent_releases.rollouts: a rollout's and a stage's states (their own context: "running" is also a job's).
ROLLOUT_STATES = {"running": lazy_pgettext("rollout", "running"), "waiting": lazy_pgettext("rollout", "waiting"),
                  "paused": lazy_pgettext("rollout", "paused"), "done": lazy_pgettext("rollout", "done"),
                  "cancelled": lazy_pgettext("rollout", "cancelled"), "pending": lazy_pgettext("rollout", "pending"),
                  "passed": lazy_pgettext("rollout", "passed"), "stopped": lazy_pgettext("rollout", "stopped")}


def _named(table: Mapping[str, Any]) -> Callable[[Any], str]:
    def name(value: Any) -> str:
        return str(table[value]) if isinstance(value, str) and value in table else ("" if value is None else
                                                                                      str(value))
    return name


device_state_name = _named(DEVICE_STATES)
sync_state_name = _named(SYNC_STATES)
event_type_name = _named(EVENT_TYPES)
command_name = _named(COMMANDS)
command_result_name = _named(COMMAND_RESULTS)
update_result_name = _named(UPDATE_RESULTS)
error_code_name = _named(ERROR_CODES)
rollout_state_name = _named(ROLLOUT_STATES)

# The agent's command messages (device_agent.commands), fixed ones and those carrying a value.
_COMMAND_MESSAGES = {"sync started": lambda: _("sync started"), "stopped": lambda: _("playing stopped"),
                     "rebooting": lambda: _("restarting"),
                     "checking for an agent update": lambda: _("checking for an agent update")}
_COMMAND_PATTERNS = ((re.compile(r"playing (?P<title>.+)", re.S), lambda m: _("playing %(title)s", **m.groupdict())),
                     (re.compile(r"volume (?P<volume>\d+)"), lambda m: _("volume set to %(volume)s",
                                                                          **m.groupdict())))


def command_message(message: Optional[str]) -> str:
    """A command's outcome message as the agent wrote it, in the reader's language when it is one the agent
    writes; otherwise (an error's text, a newer agent's words) as it came."""
    if not message:
        return ""
    if message in _COMMAND_MESSAGES:
        return _COMMAND_MESSAGES[message]()
    for pattern, say in _COMMAND_PATTERNS:
        if (m := pattern.fullmatch(message)) is not None:
            return say(m)
    return message


# device_agent.sync: why a sync did not finish; "network: ..." carries the exception's own text.
_SYNC_REASONS = {"outside the download window": lambda: _("outside the download window, it waits for it")}


def sync_reason(reason: Optional[str]) -> str:
    """Why the device's last sync did not finish, in the reader's language where the agent's words are known."""
    if not isinstance(reason, str) or not reason:
        return ""
    if reason in _SYNC_REASONS:
        return _SYNC_REASONS[reason]()
    if reason.startswith("network: "):
        return _("network: %(detail)s", detail=reason.removeprefix("network: "))
    return reason


# server.agent_releases.rollouts writes these reasons (in English, into the database and the audit log).
_ROLLOUT_REASONS = (
    (re.compile(r"stage (?P<stage>\d+): (?P<failed>\d+) of (?P<devices>\d+) devices failed, over the "
                r"(?P<pct>\d+)% error threshold"),
     lambda m: _("stage %(stage)s: %(failed)s of %(devices)s devices failed, over the %(pct)s%% error threshold",
                 **m.groupdict())),
    (re.compile(r"stage (?P<stage>\d+) passed; an admin starts stage (?P<next>\d+)"),
     lambda m: _("stage %(stage)s passed; an admin starts stage %(next)s", **m.groupdict())),
    (re.compile(r"stage (?P<stage>\d+): (?P<succeeded>\d+) of (?P<devices>\d+) devices succeeded within "
                r"(?P<minutes>\d+) min, short of (?P<pct>\d+)%"),
     lambda m: _("stage %(stage)s: %(succeeded)s of %(devices)s devices succeeded within %(minutes)s min, short of "
                 "%(pct)s%%", **m.groupdict())),
    (re.compile(r"paused by (?P<who>.+)", re.S), lambda m: _("paused by %(who)s", **m.groupdict())),
    (re.compile(r"cancelled by (?P<who>.+)", re.S), lambda m: _("cancelled by %(who)s", **m.groupdict())),
)


def rollout_reason(reason: Optional[str]) -> str:
    """Why a rollout paused, waits or was cancelled, in the reader's language (an unknown reason as it is)."""
    if not reason:
        return ""
    for pattern, say in _ROLLOUT_REASONS:
        if (m := pattern.fullmatch(reason)) is not None:
            return say(m)
    return reason


VOCABULARIES: dict[str, Callable[[Any], str]] = {
    "device_state": device_state_name, "sync_state": sync_state_name, "event_type": event_type_name,
    "command": command_name, "command_result": command_result_name, "command_message": command_message,
    "update_result": update_result_name, "error_code": error_code_name, "sync_reason": sync_reason,
    "rollout_state": rollout_state_name, "rollout_reason": rollout_reason}


def word(vocabulary: str, value: Any) -> str:
    """VALUE of VOCABULARY in the reader's language (the value itself when the vocabulary does not know it)."""
    return VOCABULARIES[vocabulary](value)


def word_span(vocabulary: str, value: Any) -> Markup:
    """VALUE's label in a span that keeps the machine word in ``title`` and ``data-value``, for support staff."""
    if value is None or value == "":
        return Markup("")
    raw = escape(str(value))
    return Markup(f'<span class="word" data-value="{raw}" title="{raw}">{escape(word(vocabulary, value))}</span>')


def register(app: Flask) -> None:
    """``word`` and ``word_span`` for the templates."""
    app.jinja_env.globals.update(word=word, word_span=word_span)
