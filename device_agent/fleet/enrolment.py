"""Bulk enrolment of simulated devices against a running lessoncast, through its API as staff would do it.

Devices are added with one CSV import per few hundred (``POST /api/v1/devices/import``, all or nothing) or, for a
county that already registered them, given new codes (``POST /api/v1/devices/<id>/code``); each store then enrols
with its code exactly as a device does (``device_agent.enrol``). A store that already holds credentials is reused,
so a second run of the simulator continues the same fleet.
"""

from __future__ import annotations

import csv
import io
import json
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from device_agent.enrol import enrol
from device_agent.store import AgentStore

CSV_CHUNK = 500


class ApiError(Exception):
    """The server refused a staff API call; the message holds its answer."""


@dataclass
class StaffApi:
    """The county's API with a staff token (a role that may manage devices and read the organisation)."""

    server: str
    token: str
    timeout: float = 60.0

    def call(self, method: str, path: str, body: Optional[bytes] = None, content_type: str = "application/json",
             query: Optional[dict] = None) -> Any:
        """The JSON answer of METHOD /api/v1PATH; ApiError naming the call and the server's message on refusal."""
        url = self.server.rstrip("/") + "/api/v1" + path + ("?" + urllib.parse.urlencode(query) if query else "")
        request = urllib.request.Request(url, data=body, method=method,
                                         headers={"Authorization": f"Bearer {self.token}",
                                                  "Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise ApiError(f"{method} {path}: HTTP {exc.code} {exc.read()[:500].decode(errors='replace')}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(f"{method} {path}: cannot reach {self.server}: {exc}") from None

    def sites(self) -> list[dict]:
        """Every site of the county."""
        return self.call("GET", "/sites")["sites"]

    def members(self, site: str) -> list[str]:
        """The member numbers of SITE."""
        out: list[str] = []
        while True:
            page = self.call("GET", "/members", query={"site": site, "limit": 500, "offset": len(out)})
            out += [m["member_id"] for m in page["members"]]
            if len(out) >= page["total"] or not page["members"]:
                return out

    def devices(self) -> list[dict]:
        """Every device of the county."""
        out: list[dict] = []
        while True:
            page = self.call("GET", "/devices", query={"limit": 1000, "offset": len(out)})
            out += page["devices"]
            if len(out) >= page["total"] or not page["devices"]:
                return out

    def import_devices(self, rows: list[dict]) -> list[dict]:
        """Add ROWS (kind, name, site, member) with one CSV import; their ids and one-time codes."""
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=["kind", "name", "site", "member"], lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: row.get(k) or "" for k in ("kind", "name", "site", "member")} for row in rows)
        return self.call("POST", "/devices/import", text.getvalue().encode(), "text/csv")["added"]

    def new_code(self, uid: str) -> str:
        """A fresh one-time enrolment code for device UID."""
        return self.call("POST", f"/devices/{uid}/code", b"{}")["enrol_code"]

    def hand_over(self, uid: str, member: str) -> None:
        """Record that radio UID is now held by MEMBER."""
        self.call("PATCH", f"/devices/{uid}", json.dumps({"member": member}).encode())


def add_devices(api: StaffApi, radios: int, terminals: int, sites: list[str], prefix: str = "sim") -> list[dict]:
    """Add RADIOS and TERMINALS spread over SITES (CSV imports of CSV_CHUNK rows); their ids and codes."""
    rows = [{"kind": "terminal", "name": f"{prefix} terminal {n + 1}", "site": sites[n % len(sites)]}
            for n in range(terminals)]
    rows += [{"kind": "radio", "name": f"{prefix} radio {n + 1}", "site": sites[n % len(sites)]}
             for n in range(radios)]
    added: list[dict] = []
    for start in range(0, len(rows), CSV_CHUNK):
        added += api.import_devices(rows[start:start + CSV_CHUNK])
    return added


def existing_stores(root: Path) -> dict[str, AgentStore]:
    """The enrolled stores under ROOT, by device id."""
    out = {}
    if root.is_dir():
        for path in sorted(root.iterdir()):
            store = AgentStore(path)
            if store.credentials_path.exists():
                out[store.credentials()["device"]] = store
    return out


def enrol_all(root: Path, server: str, codes: Iterable[tuple[str, str]], threads: int = 8) -> dict[str, AgentStore]:
    """Enrol one store under ROOT per (device id, code) with THREADS at a time; the stores by device id."""
    def one(pair: tuple[str, str]) -> tuple[str, AgentStore]:
        uid, code = pair
        store = AgentStore(root / uid)
        enrol(store, server, code)
        return uid, store

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return dict(pool.map(one, list(codes)))
