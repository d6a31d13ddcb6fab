"""Enrolment: exchange a one-time code for credentials and the county's trusted root, and store them 0600."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from device_agent.store import AgentStore
from device_agent.timekeeping import record_enrolment_time


class EnrolError(Exception):
    """Enrolment failed; the message says why and what to do."""


def enrol(store: AgentStore, server: str, code: str, timeout: float = 30.0) -> dict[str, Any]:
    """POST the code to SERVER's /api/v1/enrol, store the answer and root.json; return the answer."""
    url = server.rstrip("/") + "/api/v1/enrol"
    request = urllib.request.Request(url, data=json.dumps({"code": code}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
            date_header = response.headers.get("Date")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {exc.code}"
        raise EnrolError(f"the server refused the code: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise EnrolError(f"cannot reach {url}: {exc}. Check the address and the network, then try again.") from None
    for key in ("device", "mqtt", "http_token", "root", "metadata_url", "targets_url"):
        if key not in answer:
            raise EnrolError(f"the server's answer lacks '{key}'; is {server} a lessoncast server?")
    keep_answer(store, answer, date_header)
    return answer


def keep_answer(store: AgentStore, answer: dict[str, Any], date_header: str | None = None) -> None:
    """Store an enrolment ANSWER: root.json and credentials 0600, the first config, the enrolment time."""
    store.ensure()
    store.write_json("root.json", answer["root"], private=True)
    store.write_json("credentials.json", {k: v for k, v in answer.items() if k != "root"}, private=True)
    store.write_json("config.json", answer.get("config") or {})
    record_enrolment_time(store, date_header)
