"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json.

Kept by hand next to the views rather than generated from them: the views are thin and take plain JSON, so a
schema library would add decorators to every view for what fits in one table here. A test keeps it honest: every
/api/v1 rule of the app, with its methods, is in this document and every operation here is a rule of the app
(tests/server/test_openapi.py), and schemathesis sends generated requests for every operation and fails on a 5xx.
"""

from __future__ import annotations

from typing import Any, Optional

from playlists.model import WEEKDAYS
from server.devices.fleet import STATES as FLEET_STATES

JSON = "application/json"

# ---- small builders --------------------------------------------------------------------------------------------


def _string(max_length: int = 200, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length, **extra}


def _int(minimum: int, maximum: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def _path(name: str, schema: Optional[dict[str, Any]] = None, description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema or _string(100, minLength=1)}


def _header(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": required, "description": description, "schema": schema}


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


def _json_body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {JSON: {"schema": schema}}}


def _csv_body(description: str) -> dict[str, Any]:
    return {"required": True, "description": description, "content": {
        "text/csv": {"schema": {"type": "string"}},
        "multipart/form-data": {"schema": _object({"file": {"type": "string", "format": "binary"}}, ("file",))}}}


def _answers(ok: str, status: str = "200", content_type: Optional[str] = JSON) -> dict[str, Any]:
    success: dict[str, Any] = {"description": ok}
    if content_type:
        success["content"] = {content_type: {"schema": {"type": "object"} if content_type == JSON
                                             else {"type": "string"}}}
    refusal = {"description": "Refused: the error's code says why and its message what to do.",
               "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {status: success, "4XX": refusal}


def _op(summary: str, ok: str, *, parameters: tuple = (), body: Optional[dict] = None, status: str = "200",
        content_type: Optional[str] = JSON, public: bool = False, tags: tuple[str, ...] = ()) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": _answers(ok, status, content_type)}
    if parameters:
        operation["parameters"] = list(parameters)
    if body is not None:
        operation["requestBody"] = body
    if public:
        operation["security"] = []
    if tags:
        operation["tags"] = list(tags)
    return operation


# ---- shared parameters and schemas -----------------------------------------------------------------------------

LIMIT = _query("limit", _int(1, 1000), "Rows per page (each listing has its own maximum).")
OFFSET = _query("offset", _int(0, 10_000_000), "Rows to skip.")
TOWNSHIP = _query("township", _string(64, examples=["qs"]), "A township's code (operators always see their own).")
URGENT = _query("urgent", {"type": "string", "enum": ["0", "1"]},
                "Download now (1): devices fetch the programme at once instead of in their download window.")
SITE = _query("site", _string(64, examples=["qs-01"]), "A site's code.")
PERIOD = _query("period", _string(64, examples=["2026-Q4", "2026", "2026-01-01..2026-06-30"]),
                "A year, a quarter, days (A..B, within 2000-2099), or a published programme's code.")
PROGRAMME = _query("programme", _string(64), "A published programme's code (its window plus the grace days).")
FORMAT = _query("format", {"type": "string", "enum": ["json", "csv", "xlsx"]}, "Answer as JSON, CSV or XLSX.")
TABLE = _query("table", _string(32), "With format=csv: which table.")
LANG = _query("lang", {"type": "string", "enum": ["zh_CN", "en"]}, "Language of headings in exports.")
UID = _path("uid", _string(64, minLength=1, pattern=r"^[A-Za-z0-9_.-]+$", examples=["r-3f9a1c2b7d"]),
            "A device id.")
REF = _path("ref", _string(64, minLength=1, examples=["2026-Q4"]),
            "A programme's id, or its code (the newest version).")
UPLOAD_ID = _path("upload_id", _string(64, minLength=1), "The upload's id (the last part of its Location).")
SESSION_KEY = _path("key", _string(200, minLength=1, examples=["manual:qs-01:2026-11-20T19:30"]),
                    "A class session's key.")
MEMBER_NO = _path("member_no", _string(64, minLength=1, examples=["M0001"]), "A member's number.")
SITE_CODE = _path("code", _string(64, minLength=1, examples=["qs-01"]), "The site's code.")
MEMBER_ID = _path("member_id", _string(64, minLength=1, examples=["M0001"]), "The member's number.")
EXPORT_ID = _path("export_id", _int(1, 2**53), "The export's id (from POST /api/v1/exports).")
DATE = {"type": "string", "format": "date", "examples": ["2026-11-20"]}
LANGUAGE = _string(35, examples=["cmn", "bo", "nan"])
STRINGS = {"type": "array", "items": _string(100), "maxItems": 200}
TUS = _header("Tus-Resumable", {"type": "string", "enum": ["1.0.0"]}, "The tus version.")

DEVICE_SETTINGS = _object({
    "timezone": _string(64, examples=["Asia/Shanghai"]),
    "volume": _int(0, 100),
    "report_interval": _int(1, 86400),
    "download_window": {"oneOf": [{"type": "null"}, {"type": "array", "items": _string(5, examples=["06:00"]),
                                                     "minItems": 2, "maxItems": 2}]},
    "data_budget_mb": {"oneOf": [{"type": "null"}, _int(0, 10**6)]},
})
PROGRAMME_BODY = _object({
    "code": _string(64, minLength=1), "title": _string(200, minLength=1),
    "valid_from": DATE, "valid_until": DATE,
    "items": {"type": "array", "maxItems": 500, "items": _object({
        "lesson": _int(1, 2**31), "mandatory": {"type": "boolean"}, "groups": STRINGS,
        "variants": {"type": "array", "items": _int(1, 2**31), "maxItems": 20}}, ("lesson",))},
    "slots": {"type": "array", "maxItems": 48, "items": _object({
        "time": _string(5, examples=["07:00"]), "kind": {"type": "string", "enum": ["broadcast", "class"]},
        "item_position": {"oneOf": [{"type": "null"}, _int(1, 500)]},
        # Left out: every day. An empty list is refused (422 bad_days): remove the slot instead.
        "days": {"type": "array", "items": {"type": "string", "enum": list(WEEKDAYS)}, "minItems": 1,
                 "maxItems": 7, "uniqueItems": True, "examples": [["mon", "tue", "wed", "thu", "fri"]]}},
        ("time",))},
})
REASON = _json_body(_object({"reason": _string(500)}), required=False)
LESSON_FORM = _object({
    "file": {"type": "string", "format": "binary"}, "title": _string(200, minLength=1), "speaker": _string(100),
    "series": _string(100), "language": LANGUAGE, "description": _string(2000)}, ("file", "title"))


def _paths() -> dict[str, dict[str, Any]]:
    devices, org, att, prog = ("devices",), ("organisation",), ("attendance",), ("programmes",)
    return {
        "/api/v1/openapi.json": {"get": _op("This document.", "The OpenAPI document.", public=True)},
        "/api/v1/enrol": {"post": _op(
            "Exchange a one-time enrolment code for the device's credentials (at most 16 KB; refused attempts are "
            "rate-limited per address and per code prefix: 429 with Retry-After).", "The device's credentials.",
            body=_json_body(_object({"code": _string(64, minLength=1, examples=["K7QX-M3TD-WA9F"])}, ("code",))),
            public=True, tags=devices)},
        "/api/v1/devices": {
            "get": _op("Devices, filtered; operators see their township.", "A page of devices with the total.",
                       parameters=(TOWNSHIP, SITE, _query("kind", {"type": "string", "enum": ["radio", "terminal"]},
                                                          "Device kind."),
                                   _query("state", {"type": "string", "enum": ["pending", "enrolled", "revoked"]},
                                          "Device state."), LIMIT, OFFSET), tags=devices),
            "post": _op("Add a device; the answer holds its one-time enrolment code.", "The new device.",
                        status="201", tags=devices, body=_json_body(_object({
                            "kind": {"type": "string", "enum": ["radio", "terminal"]},
                            "name": _string(100, minLength=1),
                            "site": _string(64, examples=["qs-01"]), "language": LANGUAGE,
                            "groups": {**STRINGS, "examples": [["qs-branch-1"]]}, "member": _string(64),
                            "id": _string(64, pattern=r"^[A-Za-z0-9_.-]+$")}, ("kind", "name"))))},
        "/api/v1/devices/import": {"post": _op(
            "Add devices from a CSV (kind, name, site, language, groups, member, id); all or nothing.",
            "The devices added with their codes.", status="201", body=_csv_body("devices.csv"), tags=devices)},
        "/api/v1/devices/{uid}": {
            "get": _op("One device.", "The device.", parameters=(UID,), tags=devices),
            "patch": _op("Change a device's name, site, language, groups, radio holder or settings.", "The device.",
                         parameters=(UID,), tags=devices, body=_json_body(_object({
                             "name": _string(100, minLength=1), "site": _string(64), "language": LANGUAGE,
                             "groups": STRINGS, "member": _string(64), "member_from": DATE,
                             "settings": DEVICE_SETTINGS})))},
        "/api/v1/devices/{uid}/commands": {"post": _op(
            "Send resync, play-now, stop, set-volume or reboot (expires after 24 hours).", "The command sent.",
            status="202", parameters=(UID,), tags=devices, body=_json_body(_object({
                "type": {"type": "string", "enum": ["resync", "play-now", "stop", "set-volume", "reboot"]},
                "volume": _int(0, 100), "programme": _string(64), "position": _int(0, 9999)}, ("type",))))},
        "/api/v1/devices/{uid}/status": {"get": _op("The device's last reported status.", "Its status.",
                                                    parameters=(UID,), tags=devices)},
        "/api/v1/devices/{uid}/record": {"get": _op("The device's ingest record: acks, gaps, quarantined batches.",
                                                    "Its record.", parameters=(UID,), tags=devices)},
        "/api/v1/devices/{uid}/code": {"post": _op("Issue a new one-time enrolment code.", "The new code.",
                                                   parameters=(UID,), tags=devices)},
        "/api/v1/devices/{uid}/revoke": {"post": _op("Revoke a device.", "The device.", parameters=(UID,),
                                                     body=REASON, tags=devices)},
        "/api/v1/fleet": {"get": _op(
            "Devices with their last status.", "A page of the fleet table.", tags=devices,
            parameters=(TOWNSHIP, SITE, _query("kind", {"type": "string", "enum": ["radio", "terminal"]}, "Kind."),
                        _query("state", {"type": "string", "enum": list(FLEET_STATES)},
                               "Only devices in this state, by the console's devices table's rules (online, offline, "
                               "offline for long, stale, sync failed, behind the programme, low battery, storage "
                               "nearly full); an unknown state is a 422."),
                        _query("online", {"type": "string", "enum": ["0", "1"]},
                               "Alias of state=online (1) or state=offline (0)."),
                        _query("stale", {"type": "string", "enum": ["0", "1"]}, "stale=1: alias of state=stale."),
                        _query("limit", _int(1, 2000), "Rows per page."), OFFSET))},
        "/api/v1/ingest/metrics": {"get": _op("Ingest totals over all devices.", "The totals.", tags=devices)},
        "/api/v1/townships": {"get": _op("Every township.", "The townships.", tags=org)},
        "/api/v1/sites": {"get": _op("Every site, or one township's.", "The sites.", parameters=(TOWNSHIP,),
                                     tags=org)},
        "/api/v1/sites/{code}": {"patch": _op(
            "Rename a site or move it to another township.", "The site.", tags=org,
            parameters=(SITE_CODE,),
            body=_json_body(_object({"name": _string(100, minLength=1), "township": _string(64)})))},
        "/api/v1/groups": {
            "get": _op("Every group, or one kind's.", "The groups.", tags=org, parameters=(
                _query("kind", {"type": "string", "enum": ["township", "village", "branch", "special"]}, "Kind."),)),
            "post": _op("Create a group.", "The group.", status="201", tags=org, body=_json_body(_object({
                "key": _string(64, minLength=1), "name": _string(100, minLength=1),
                "kind": {"type": "string", "enum": ["township", "village", "branch", "special"]},
                "township": _string(64)}, ("key", "name", "kind"))))},
        "/api/v1/members": {"get": _op(
            "A page of members with the total.", "The page.", tags=org,
            parameters=(SITE, TOWNSHIP, _query("q", _string(100), "Name or number contains."),
                        _query("limit", _int(1, 500), "Rows per page."), OFFSET))},
        "/api/v1/members/{member_id}": {"patch": _op(
            "Change a member.", "The member.", tags=org,
            parameters=(MEMBER_ID,),
            body=_json_body(_object({
                "name": _string(100, minLength=1), "branch": _string(100), "site": _string(64),
                "card_token": _string(100), "joined": {"oneOf": [{"type": "null"}, DATE]},
                "left": {"oneOf": [{"type": "null"}, DATE]}, "flags": STRINGS, "groups": STRINGS})))},
        "/api/v1/members/{member_no}/record": {"get": _op(
            "One member's lessons and classes in a period.", "The record.", tags=att,
            parameters=(MEMBER_NO, PERIOD, PROGRAMME, FORMAT, TABLE, LANG))},
        "/api/v1/org/import": {"post": _op(
            "Import a sites, groups or members CSV; 422 with every bad row, and then nothing is written. An "
            "operator's file must hold only their township's rows (403 other_township naming the others' lines).",
            "What was created and updated.", tags=org, body=_csv_body("sites.csv, groups.csv or members.csv"),
            parameters=(_query("kind", {"type": "string", "enum": ["sites", "groups", "members"]},
                               "The file's kind."),))},
        "/api/v1/lessons": {
            "get": _op("Lessons, newest first.", "A page of lessons.", tags=("lessons",), parameters=(
                _query("page", _int(1, 200_000), "Page number, from 1."), _query("limit", _int(1, 200), "Per page."),
                OFFSET)),
            "post": _op("Upload a lesson (multipart, streamed).", "The lesson (201 new, 200 the same bytes again).",
                        status="201", tags=("lessons",),
                        body={"required": True, "content": {"multipart/form-data": {"schema": LESSON_FORM}}})},
        "/api/v1/lessons/{lesson_id}": {"get": _op(
            "One lesson with its renditions.", "The lesson.", tags=("lessons",),
            parameters=(_path("lesson_id", _int(1, 2**53), "The lesson's id."),))},
        "/api/v1/lessons/{lesson_id}/retry": {"post": _op(
            "Queue the lesson's failed jobs again.", "The lesson.", tags=("lessons",),
            parameters=(_path("lesson_id", _int(1, 2**53), "The lesson's id."),))},
        "/api/v1/uploads": {
            "options": _op("The tus version, extensions and maximum size.", "tus headers.", status="204",
                           content_type=None, public=True, tags=("uploads",)),
            "post": _op("Create a resumable (tus 1.0.0) upload.", "Created; Location names it.", status="201",
                        content_type=None, tags=("uploads",), parameters=(
                            TUS, _header("Upload-Length", _string(20, pattern=r"^[0-9]+$"), "Size in bytes.", True),
                            _header("Upload-Metadata", _string(4000),
                                    "tus metadata: title (required), filename, speaker, series, language.", True)))},
        "/api/v1/uploads/{upload_id}": {
            "options": _op("The tus version, extensions and maximum size.", "tus headers.", status="204",
                           content_type=None, public=True, parameters=(UPLOAD_ID,), tags=("uploads",)),
            "head": _op("How many bytes are stored.", "Upload-Offset and Upload-Length.", content_type=None,
                        parameters=(UPLOAD_ID, TUS), tags=("uploads",)),
            "get": _op("The upload as JSON: offset, length, and the lesson it became or why it was refused.",
                       "The upload.", parameters=(UPLOAD_ID,), tags=("uploads",)),
            "patch": _op("Append bytes at Upload-Offset.", "Stored; Upload-Offset is the new offset.", status="204",
                         content_type=None, tags=("uploads",), parameters=(
                             UPLOAD_ID, TUS, _header("Upload-Offset", _string(20, pattern=r"^[0-9]+$"),
                                                     "Where these bytes start.", True)),
                         body={"required": True, "content": {"application/offset+octet-stream": {
                             "schema": {"type": "string", "format": "binary"}}}}),
            "delete": _op("Cancel an upload.", "Cancelled.", status="204", content_type=None,
                          parameters=(UPLOAD_ID, TUS), tags=("uploads",))},
        "/api/v1/programmes": {
            "get": _op("Every programme version, newest first.", "The programmes.", tags=prog),
            "post": _op("Create a draft programme.", "The draft.", status="201", tags=prog,
                        body=_json_body({**PROGRAMME_BODY, "required": ["code", "title", "valid_from",
                                                                         "valid_until"]}))},
        "/api/v1/programmes/{ref}": {
            "get": _op("One programme.", "The programme.", parameters=(REF,), tags=prog),
            "patch": _op("Edit a draft (409 once published).", "The programme.", parameters=(REF,), tags=prog,
                         body=_json_body(PROGRAMME_BODY))},
        "/api/v1/programmes/{ref}/new-version": {"post": _op("A draft copy of a published programme.", "The draft.",
                                                             status="201", parameters=(REF,), tags=prog)},
        "/api/v1/programmes/{ref}/preview": {"get": _op("What publishing would do.", "The preview.",
                                                        parameters=(REF, URGENT), tags=prog)},
        "/api/v1/programmes/{ref}/publish": {"post": _op("Publish a draft.", "What was published.",
                                                         parameters=(REF, URGENT), tags=prog)},
        "/api/v1/channels": {"get": _op("Every channel.", "The channels.", tags=prog)},
        "/api/v1/channels/{channel}/manifest.json": {"get": _op(
            "A channel's current manifest.", "The manifest.", tags=prog,
            parameters=(_path("channel", _string(64, minLength=1), "The channel id."),))},
        "/api/v1/channels/{channel}/playlist.m3u8": {"get": _op(
            "A channel as an M3U8 playlist.", "The playlist.", content_type="application/vnd.apple.mpegurl",
            tags=prog, parameters=(_path("channel", _string(64, minLength=1), "The channel id."),))},
        "/api/v1/reports/participation": {"get": _op(
            "The participation report of a period or programme.", "The report (JSON, CSV or XLSX).", tags=att,
            parameters=(PERIOD, PROGRAMME, TOWNSHIP, FORMAT, TABLE, LANG))},
        "/api/v1/sessions": {
            "get": _op("Class sessions of a period.", "The sessions.", tags=att, parameters=(
                {**PERIOD, "required": True}, TOWNSHIP, SITE,
                _query("classes_only", {"type": "string", "enum": ["0", "1"]}, "Only classes."))),
            "post": _op("Record a class held without a terminal.", "The session's key.", status="201", tags=att,
                        body=_json_body(_object({"site": _string(64, minLength=1, examples=["qs-01"]), "date": DATE,
                                                 "time": _string(5, examples=["19:30"]), "title": _string(200)},
                                                ("site", "date"))))},
        "/api/v1/sessions/roster": {"post": _op("Import a roster CSV; all rows are checked before any is stored.",
                                                "What was stored.", status="201", tags=att,
                                                body=_csv_body("A roster CSV (English or Chinese headers)."))},
        "/api/v1/sessions/{key}/attendees": {"get": _op("Who attended, by source.", "The attendees.", tags=att,
                                                        parameters=(SESSION_KEY,))},
        "/api/v1/sessions/{key}/attendees/{member_no}": {
            "put": _op("Add a member to a session (audited).", "The attendees.", tags=att,
                       parameters=(SESSION_KEY, MEMBER_NO), body=REASON),
            "delete": _op("Remove a member from a session (audited).", "The attendees.", tags=att,
                          parameters=(SESSION_KEY, MEMBER_NO), body=REASON)},
        "/api/v1/exports": {"post": _op(
            "Have the worker build a report file; poll the answer's url for its progress.",
            "The export, queued (also given in Location).", status="202", tags=att,
            body=_json_body(_object({"report": {"type": "string", "enum": ["participation"]},
                                     "period": _string(64, examples=["2026-Q4"]), "programme": _string(64),
                                     "township": _string(64, examples=["qs"]),
                                     "format": {"type": "string", "enum": ["json", "csv", "xlsx"]},
                                     "table": _string(32), "lang": {"type": "string", "enum": ["zh_CN", "en"]}})))},
        "/api/v1/exports/{export_id}": {"get": _op(
            "An export's state, progress and download link (only for whoever asked, or an admin).", "The export.",
            tags=att, parameters=(EXPORT_ID,))},
        "/api/v1/exports/{export_id}/file": {"get": _op(
            "The finished export's file (only for whoever asked, or an admin).", "The file.", content_type=None,
            tags=att, parameters=(EXPORT_ID,))},
    }


def _training_paths() -> dict[str, dict[str, Any]]:
    """Study hours, off-system trainings, certificates, site logbooks and make-ups (server/api/training.py)."""
    tr = ("training",)
    year = _query("year", _int(2000, 2099), "The year (default: this year).")
    month = _query("month", _string(7, examples=["2026-10"]), "The month.", required=True)
    site_code = _path("site_code", _string(64, minLength=1, examples=["qs-01"]), "The site's code.")
    cert_number = _path("number", _string(32, minLength=1, examples=["2026-000001"]), "The certificate's number.")
    batch_params = (_query("programme", _string(64), "A programme's code.", required=True),
                    {**SITE, "required": True}, LANG)
    html_format = _query("format", {"type": "string", "enum": ["json", "csv", "xlsx", "html"]},
                         "JSON, CSV, XLSX, or html for A4 printing.")
    return {
        "/api/v1/reports/study-hours": {"get": _op(
            "Every member's study hours of a year against their quota, below quota, site and township totals.",
            "The report (JSON, CSV or XLSX).", tags=tr, parameters=(year, TOWNSHIP, FORMAT, TABLE, LANG))},
        "/api/v1/members/{member_no}/study-hours": {"get": _op(
            "One member's study hours with every source and its date.", "The record.", tags=tr,
            parameters=(MEMBER_NO, year, FORMAT, TABLE, LANG))},
        "/api/v1/trainings": {"post": _op(
            "Record off-system trainings: a roster CSV (member, title, date, hours) or one JSON entry.",
            "How many were added and updated.", status="201", tags=tr, body={
                "required": True, "content": {
                    **_csv_body("A roster CSV (member, title, date, hours; or 党员编号, 培训名称, 日期, 学时).")["content"],
                    JSON: {"schema": _object({"member": _string(64, minLength=1), "title": _string(200, minLength=1),
                                              "date": DATE, "hours": {"type": "number"}},
                                             ("member", "title", "date", "hours"))}}})},
        "/api/v1/lessons/{lesson_id}/credited-hours": {"put": _op(
            "Set a lesson's credited study hours (null: its duration counts).", "The lesson's credited hours.",
            tags=tr, parameters=(_path("lesson_id", _int(1, 2**53), "The lesson's id."),),
            body=_json_body(_object({"hours": {"type": ["number", "null"]}}, ("hours",))))},
        "/api/v1/certificates": {
            "post": _op("Issue certificates to the members who completed a programme.", "The numbers issued.",
                        status="201", tags=tr, body=_json_body(_object({
                            "programme": _string(64, minLength=1), "site": _string(64),
                            "hours": {"type": ["number", "null"]}}, ("programme",)))),
            "get": _op("Certificates issued.", "The certificates.", tags=tr,
                       parameters=(_query("programme", _string(64), "A programme's code."), SITE))},
        "/api/v1/certificates/{number}/print": {
            "get": _op("A certificate as an A4 print page, to look at (not counted as a print).", "The page.",
                       content_type="text/html", tags=tr, parameters=(cert_number, LANG)),
            "post": _op("Print (or reprint) a certificate: the print is counted; the A4 page is the answer.",
                        "The page.", content_type="text/html", tags=tr, parameters=(cert_number, LANG))},
        "/api/v1/certificates/print": {
            "get": _op("Every certificate of a programme at a site, as A4 pages, to look at (not counted).",
                       "The pages.", content_type="text/html", tags=tr, parameters=batch_params),
            "post": _op("Print a site's batch: each certificate's print is counted; the A4 pages are the answer.",
                        "The pages.", content_type="text/html", tags=tr, parameters=batch_params)},
        "/api/v1/sites/{site_code}/logbook": {"get": _op(
            "A site's logbooks (四簿一册) of a month.", "The five books.", tags=tr,
            parameters=(site_code, month, html_format, TABLE, LANG))},
        "/api/v1/sites/{site_code}/feedback": {"post": _op(
            "Write an entry in a site's feedback log.", "The entry.", status="201", tags=tr, parameters=(site_code,),
            body=_json_body(_object({"text": _string(1000, minLength=1)}, ("text",))))},
        "/api/v1/reports/site-rules": {"get": _op(
            "Every site's month against the site rules.", "The sites.", tags=tr,
            parameters=(month, TOWNSHIP, _query("short", {"type": "string", "enum": ["0", "1"]},
                                                "Only the sites falling short.")))},
        "/api/v1/makeups/sweep": {"post": _op(
            "Record the make-ups of every class that is over and push them to absent members' radios.",
            "The make-up programmes published.", tags=tr)},
        "/api/v1/makeups/{session_key}/approve": {"post": _op(
            "Approve a class's make-ups (LESSONCAST_MAKEUP_MODE=approval).", "The programme published.", tags=tr,
            parameters=(_path("session_key", _string(200, minLength=1), "The class session's key."),))},
        "/api/v1/reports/makeups": {"get": _op(
            "Make-ups owed, done, late and overdue per site; participation with and without make-ups.",
            "The report.", tags=tr, parameters=(PERIOD, TOWNSHIP, FORMAT, TABLE, LANG))},
        "/api/v1/makeups/visits": {"get": _op(
            "Members without a radio who owe a make-up: the operator's visit list.", "The list.", tags=tr)},
    }


def _agent_paths() -> dict[str, dict[str, Any]]:
    """Agent releases and their staged rollouts (server/api/agent_releases.py), admins only."""
    tags = ("agent updates",)
    rollout_id = _path("rollout_id", _int(1, 2**31 - 1), "The rollout's id.")
    pct = _int(0, 100)
    stage = _object({"kind": {"type": "string", "enum": ["devices", "township", "county"]},
                     "count": _int(1, 100_000), "township": _string(64), "success_pct": pct, "error_pct": pct,
                     "time_limit_min": _int(1, 86400)}, ("kind",))
    return {
        "/api/v1/agent-releases": {"get": _op("Every registered agent release, newest version first.",
                                              "The releases.", tags=tags)},
        "/api/v1/agent-rollouts": {
            "get": _op("Every rollout with its stages' live counts.", "The rollouts.", tags=tags),
            "post": _op("Start rolling a release out in stages.", "The rollout.", status="201", tags=tags,
                        body=_json_body(_object({"release": _string(32, minLength=1),
                                                 "stages": {"type": "array", "items": stage, "minItems": 1,
                                                            "maxItems": 10},
                                                 "auto_advance": {"type": "boolean"},
                                                 "allow_downgrade": {"type": "boolean"}}, ("release", "stages"))))},
        "/api/v1/agent-rollouts/{rollout_id}": {"get": _op(
            "One rollout with its stages' live counts and why failed devices failed.", "The rollout.", tags=tags,
            parameters=(rollout_id,))},
        "/api/v1/agent-rollouts/{rollout_id}/{action}": {"post": _op(
            "Pause, resume (or start the next stage of a waiting rollout), retry the failed devices, or cancel.",
            "The rollout.", tags=tags, parameters=(rollout_id, _path(
                "action", {"type": "string", "enum": ["pause", "resume", "retry-failed", "cancel"]},
                "What to do.")))},
    }


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of /api/v1."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "lessoncast", "version": "1",
                 "description": "Party lessons to radios and village terminals, and attendance from their plays. "
                                "Every refusal is JSON {\"error\": {\"code\", \"message\"}} with a stable code."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "An API token ('lessoncast token create')."}},
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                               "field": {"type": "string"}}}}}},
        },
        "paths": {**_paths(), **_training_paths(), **_agent_paths()},
    }
