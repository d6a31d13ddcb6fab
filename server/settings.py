"""The one table of lessoncast server settings: names, defaults, help, and how they are read.

Every setting comes from, in order of precedence: a ``LESSONCAST_<NAME>`` environment variable, the instance
config file (TOML, ``<data dir>/lessoncast.toml`` or the path in ``LESSONCAST_CONFIG``), then the default here.
The docs and ``lessoncast config`` are generated from this table, and a test checks the docs list every name.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from server import instance_location

PREFIX = "LESSONCAST_"


@dataclass(frozen=True)
class Setting:
    """One setting: its name (lower case, without prefix), default, parser and help line."""

    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str
    secret: bool = False

    @property
    def env(self) -> str:
        """The environment variable that sets this setting."""
        return PREFIX + self.name.upper()


def _bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _size(text: str) -> int:
    """Parse a byte size such as ``4G``, ``4 GiB``, ``500M`` or ``1048576``."""
    value = str(text).strip().upper().replace(" ", "").removesuffix("IB").removesuffix("B")
    for suffix, factor in (("K", 1024), ("M", 1024**2), ("G", 1024**3), ("T", 1024**4)):
        if value.endswith(suffix):
            return int(float(value[:-1]) * factor)
    return int(value)


def human_size(size: int) -> str:
    """SIZE in bytes as a person reads it and ``_size`` reads it back: 4 GiB, 512 KiB, 1.5 GiB, 1000 B."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            whole, rest = divmod(size, factor)
            return f"{whole} {unit}" if not rest else f"{size / factor:.2f} {unit}".replace(".00 ", " ")
    return f"{size} B"
def _makeup_mode(text: str) -> str:
    value = str(text).strip().lower()
    if value not in ("on", "off", "approval"):
        raise ValueError(f"expected on, off or approval, got {text!r}")
    return value


def parse_quotas(text: str) -> dict[str, float]:
    """Yearly study-hour quotas as 'member=32,branch_secretary=56': every role needs one."""
    quotas: dict[str, float] = {}
    for part in str(text).split(","):
        role, sep, hours = part.partition("=")
        if not sep or role.strip() not in ("member", "branch_secretary", "committee"):
            raise ValueError(f"{part!r}: write role=hours with role member, branch_secretary or committee")
        quotas[role.strip()] = float(hours)
        if quotas[role.strip()] < 0:
            raise ValueError(f"{part!r}: hours cannot be negative")
    missing = {"member", "branch_secretary", "committee"} - set(quotas)
    if missing:
        raise ValueError(f"no quota for {', '.join(sorted(missing))}")
    return quotas


def _positive_int(text: str) -> int:
    """A whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise ValueError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _days(text: str) -> int:
    """A whole number of days, 0 or more (0: no limit)."""
    value = int(text)
    if value < 0:
        raise ValueError(f"expected a whole number of days, 0 or more (0: never), got {text!r}")
    return value


def _positive_float(text: str) -> float:
    """A number above 0."""
    value = float(text)
    if not value > 0:
        raise ValueError(f"expected a number above 0, got {text!r}")
    return value


def _count(text: str) -> int:
    """A whole number of at least 0."""
    value = int(text)
    if value < 0:
        raise ValueError(f"expected a whole number of at least 0, got {text!r}")
    return value


def _fraction(text: str) -> float:
    """A share above 0 and at most 1, such as 0.9."""
    value = float(text)
    if not 0 < value <= 1:
        raise ValueError(f"expected a share above 0 and at most 1 (0.9 for 90%), got {text!r}")
    return value


def _zone(text: str) -> str:
    """An IANA time zone name such as Asia/Shanghai."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(str(text))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{text!r} is not a time zone name such as Asia/Shanghai or Asia/Urumqi") from None
    return str(text)


def _duration(text: str) -> float:
    """Parse seconds, or a number with ``s``, ``m`` or ``h``."""
    value = str(text).strip().lower()
    for suffix, factor in (("h", 3600), ("m", 60), ("s", 1)):
        if value.endswith(suffix):
            return float(value[:-1]) * factor
    return float(value)


SETTINGS: tuple[Setting, ...] = (
    Setting("data_dir", "", "Where the database, media store, uploads, keys and broker files live. Default: the "
            "instance 'lessoncast init' or 'lessoncast run' last used (recorded in ~/.config/lessoncast/instance), "
            "else ~/.local/share/lessoncast."),
    Setting("config", "", "Path of the instance config file (TOML). Default: lessoncast.toml in the data directory."),
    Setting("host", "127.0.0.1", "Address the web server listens on. Use 0.0.0.0 to serve devices on the network."),
    Setting("port", 8750, "Port of the web server (API, console and media downloads).", int),
    Setting("public_url", "", "URL devices and staff use to reach the web server. Default: http://HOST:PORT."),
    Setting("database_url", "", "SQLAlchemy database URL. Default: SQLite (WAL) in the data directory."),
    Setting("redis_url", "", "When set, jobs use RedisHuey on this Redis instead of SqliteHuey.", secret=True),
    Setting("queue_name", "lessoncast", "Name of the job queue; instances sharing one Redis need different names."),
    Setting("mqtt_url", "", "An external MQTT broker (mqtt://user:pass@host:port). When set, no broker is started.",
            secret=True),
    Setting("mqtt_host", "127.0.0.1", "Address the broker that lessoncast starts listens on."),
    Setting("mqtt_port", 1884, "Port of the broker's device listener (lessoncast run starts the broker).", int),
    Setting("mqtt_server_host", "127.0.0.1", "Address of the broker listener for lessoncast's own processes."),
    Setting("mqtt_server_port", 0, "Port of the broker listener for lessoncast's own processes (0: MQTT_PORT + 1, "
            "so LESSONCAST_MQTT_PORT alone moves both listeners).", _count),
    Setting("mqtt_tls_port", 0, "Port of an extra TLS listener for devices (0: none).", int),
    Setting("mqtt_tls_cert", "", "PEM certificate chain of the TLS listener."),
    Setting("mqtt_tls_key", "", "PEM private key of the TLS listener.", secret=True),
    Setting("mqtt_public_url", "", "Broker address devices are given at enrolment (mqtt:// or mqtts://HOST:PORT). "
            "Default: the public URL's host and the device port."),
    Setting("mosquitto_bin", "mosquitto", "The Mosquitto executable lessoncast run starts."),
    Setting("nginx", True, "lessoncast run starts nginx on HOST:PORT in front of gunicorn, so slow clients wait in "
            "nginx, not in a web worker. Turn off only behind your own reverse proxy that buffers requests.", _bool),
    Setting("nginx_bin", "nginx", "The nginx executable lessoncast run starts."),
    Setting("web_backend_port", 0, "Loopback port gunicorn listens on behind nginx (0: PORT + 1).", _count),
    Setting("trusted_proxies", 0, "Reverse proxies of your own in front of lessoncast whose X-Forwarded-For and "
            "X-Forwarded-Proto are trusted (the nginx lessoncast starts is always trusted).", _count),
    Setting("web_workers", 2, "gunicorn worker processes.", int),
    Setting("web_threads", 8, "Threads per gunicorn worker (gthread), so a slow village download holds one thread.",
            int),
    Setting("ingest_processes", 2, "Event ingest processes lessoncast run starts; they share the devices' events "
            "(two use both cores of a small server).", _positive_int),
    Setting("ingest_max_batch_bytes", 512 * 1024, "Largest events batch ingest stores (bytes, or with K/M); a larger "
            "one is quarantined. The agent's batches of 200 events are about 100 KB. The broker refuses anything over "
            "four times this.", _size),
    Setting("ingest_max_event_bytes", 16 * 1024, "Largest single event in a batch (bytes, or with K); a batch holding "
            "a larger one is quarantined.", _size),
    Setting("ingest_device_rate", 5.0, "Batches per second each ingest process stores for one device once its burst "
            "is spent; the other devices are served in turn meanwhile.", _positive_float),
    Setting("ingest_device_burst", 50, "Batches of one device each ingest process stores at once before the rate "
            "applies (50 agent batches are 10,000 events).", _positive_int),
    Setting("ingest_device_backlog", 100, "Batches of one device an ingest process holds waiting to be stored; "
            "beyond that they are not taken, the device is not acked and sends them again later.", _positive_int),
    Setting("ingest_backlog_bytes", 256 * 1024**2, "Payload bytes an ingest process holds waiting, for all devices "
            "together (bytes, or with M/G); over it, the device holding the most waits.", _size),
    Setting("job_workers", 2, "Parallel transcoding jobs (renditions of a source run side by side).", int),
    Setting("job_lease", 120.0, "Seconds a running job's lease lasts; the worker renews it while the job runs.",
            _duration),
    Setting("job_max_attempts", 3, "How many times a job whose worker died is started again before it fails.", int),
    Setting("max_upload_size", 4 * 1024**3, "Largest accepted media file (bytes, or with K/M/G).", _size),
    Setting("max_duration", 4 * 3600.0, "Longest accepted media duration (seconds, or with m/h).", _duration),
    Setting("max_width", 3840, "Widest accepted video, in pixels.", int),
    Setting("max_height", 2160, "Tallest accepted video, in pixels.", int),
    Setting("max_bitrate", 60_000_000, "Highest accepted overall bitrate, in bits per second.", int),
    Setting("upload_expiry", 7 * 86400.0, "Seconds an unfinished resumable upload is kept before it is removed.",
            _duration),
    Setting("upload_free_margin", 2 * 1024**3, "Free space kept on the upload disk: an upload that would leave less "
            "(counting what unfinished uploads still need) is refused (bytes, or with K/M/G).", _size),
    Setting("max_open_uploads", 10, "Unfinished resumable uploads one API token may hold at a time.", _positive_int),
    Setting("report_inline_members", 10_000, "Reports covering more members than this are built by the worker: the "
            "API answers 202 with an export to poll and download.", int),
    Setting("report_refresh", 60.0, "The worker computes again the kept dashboard reports whose data moved at most "
            "once every this many seconds (seconds, or with m/h); a round over a large county takes seconds of CPU, "
            "so a shorter interval spends a core on it while plays arrive.", _duration),
    Setting("report_max_age", 300.0, "A dashboard shows a kept report whose data has since moved (saying how old "
            "its figures are) while it is younger than this; older, the page computes it (seconds, or with m/h).",
            _duration),
    Setting("export_expiry", 86400.0, "Seconds a finished report export is kept for download (seconds, or with "
            "m/h).", _duration),
    Setting("media_require_token", False, "Require a device or staff token to download media.", _bool),
    Setting("media_base_url", "", "Base URL devices download media from (a CDN or static server). Default: this server."),
    Setting("enrol_code_days", 30.0, "Days a device's one-time enrolment code stays valid.", float),
    Setting("operator_token_days", 180, "Days a new operator API token stays valid unless 'lessoncast token create "
            "--expires-in' says otherwise (0: never expires). Other roles' tokens never expire by default.",
            _days),
    Setting("enrol_attempts_per_hour", 20, "Refused enrolments a client address, or a code's first group, may have in "
            "an hour before further attempts get 429 (0: no limit).", int),
    Setting("root_passphrase", "", "Passphrase of the offline TUF root key (for automation; prefer the file).",
            secret=True),
    Setting("root_passphrase_file", "", "File holding the root key passphrase."),
    Setting("attendance_grace_days", 30, "Days after a programme ends in which plays still count (and packs verify).",
            int),
    Setting("attendance_completion", 0.9, "Share of a rendition's duration a radio's member must cover to complete "
            "the lesson (0 to 1).", _fraction),
    Setting("attendance_class_minutes", 20.0, "Minutes of audible, operator-started playback at a terminal that make a "
            "class session.", float),
    Setting("attendance_checkin_before", 30 * 60.0, "How long before a session starts a check-in still counts for it "
            "(seconds, or with m/h).", _duration),
    Setting("attendance_checkin_after", 30 * 60.0, "How long after a session's last play a check-in still counts for "
            "it (seconds, or with m/h).", _duration),
    Setting("attendance_clock_tolerance", 10 * 60.0, "Clock skew tolerated before an event's time counts as "
            "implausible (seconds, or with m/h).", _duration),
    Setting("training_minutes_per_hour", 45.0, "Minutes of a completed lesson that earn one study hour (学时), unless "
            "the lesson sets its own credited hours.", float),
    Setting("training_quotas", "member=32,branch_secretary=56,committee=56", "Study hours a year each role must earn: "
            "role=hours pairs separated by commas (roles: member, branch_secretary, committee).", parse_quotas),
    Setting("logbook_sessions_per_month", 2, "Class sessions a site must hold each month (site logbooks' check).",
            _positive_int),
    Setting("logbook_viewing_hours_per_month", 20.0, "Hours of viewing (sessions and broadcasts) a site must log "
            "each month.", float),
    Setting("logbook_classes_per_quarter", 1, "Classes a site must hold each quarter.", _positive_int),
    Setting("makeup_mode", "on", "Make-up lessons (补课) for members absent from a class: on, off, or approval (an "
            "operator approves each class's make-ups before they are pushed).", _makeup_mode),
    Setting("makeup_days", 30, "Days after a class a member has to complete its make-up before it is overdue.",
            _positive_int),
    Setting("county_timezone", "Asia/Shanghai", "Time zone of the county: days, quarters and years of reports.",
            _zone),
    Setting("console_idle_timeout", 30 * 60.0, "How long a console session lasts without a request before the user "
            "signs in again (seconds, or with m/h).", _duration),

    Setting("device_silent_after", 15 * 60.0, "A device not heard from for this long counts as offline in the fleet "
            "table even when its last status said online (a clean stop leaves no last will); seconds, or with m/h.",
            _duration),
    Setting("device_offline_days", 3.0, "Days without a word from a device before the home page and the devices "
            "table flag it as offline for long.", float),
    Setting("device_low_battery", 20, "Battery percentage at or below which a device is flagged low.", int),
    Setting("device_status_retention_days", 8.0, "Days a device's minute-by-minute statuses are kept (the worker "
            "deletes older ones); the device page's chart reads the hourly rollup, which is kept, and its sync log "
            "reads the last day of minute statuses, so keep at least 1.", float),
    Setting("device_storage_low_mb", 500, "Free storage (MB) at or below which a device is flagged nearly full.",
            int),
    Setting("county_name", "", "The county's name for the county row of reports (e.g. 青山县). Empty: \"本县\" "
            "(\"This county\" in English)."),
    Setting("participation_target", 0.95, "The participation rate the attendance dashboard marks each township "
            "against (0.95 for 95%, the winter training's target).", _fraction),
    Setting("secret_key", "", "Flask secret key. Default: generated once and kept in the data directory.", secret=True),
    Setting("log_level", "INFO", "Logging level: DEBUG, INFO, WARNING or ERROR."),
    Setting("access_log", False, "Log every HTTP request gunicorn answers (one line each) to lessoncast run's output.",
            _bool),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


class Settings(Mapping[str, Any]):
    """Effective settings: a read-only mapping from setting name to parsed value, with where each came from."""

    def __init__(self, values: dict[str, Any], sources: dict[str, str]):
        self._values = values
        self.sources = sources

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def data_path(self) -> Path:
        """The data directory as an absolute path."""
        return Path(self._values["data_dir"]).expanduser().resolve()

    @property
    def db_url(self) -> str:
        """The database URL, defaulting to SQLite in the data directory."""
        return self._values["database_url"] or f"sqlite:///{self.data_path / 'lessoncast.db'}"

    @property
    def web_url(self) -> str:
        """The URL of the web server as devices and staff see it."""
        if self._values["public_url"]:
            return self._values["public_url"].rstrip("/")
        host = self._values["host"]
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{self._values['port']}"

    @property
    def device_mqtt(self) -> tuple[str, str, int]:
        """(scheme, host, port) of the broker as devices reach it: mqtt or mqtts."""
        from urllib.parse import urlsplit

        if self._values["mqtt_public_url"]:
            url = urlsplit(self._values["mqtt_public_url"])
            default = 8883 if url.scheme == "mqtts" else 1883
            return url.scheme or "mqtt", url.hostname or "127.0.0.1", url.port or default
        host = urlsplit(self.web_url).hostname or "127.0.0.1"
        if self._values["mqtt_tls_port"]:
            return "mqtts", host, self._values["mqtt_tls_port"]
        return "mqtt", host, self._values["mqtt_port"]

    def masked(self) -> list[tuple[str, str, str]]:
        """Return (env name, printable value, source) rows with secrets masked."""
        rows = []
        for s in SETTINGS:
            value = self._values[s.name]
            shown = "********" if (s.secret and value) else str(value)
            if s.parse is _size and isinstance(value, int):
                shown = human_size(value)
            if s.name in ("mqtt_url", "redis_url", "database_url") and value and "@" in str(value):
                shown = _mask_url(str(value))
            rows.append((s.env, shown, self.sources[s.name]))
        return rows


def _mask_url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:********@{host}"


def _parse(setting: Setting, raw: Any, origin: str) -> Any:
    if not isinstance(raw, str) and setting.parse is not str:
        raw = str(raw)
    try:
        return setting.parse(raw) if isinstance(raw, str) else raw
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{setting.env} from {origin}: {raw!r} is not valid ({exc}).") from None


def load(environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Read the effective settings from overrides, the environment, the instance config file and defaults."""
    environ = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(BY_NAME)
    if unknown:
        raise SettingsError(f"unknown settings: {', '.join(sorted(unknown))}")

    def early(name: str) -> str:
        if name in overrides:
            return str(overrides[name])
        return environ.get(BY_NAME[name].env, "") or str(BY_NAME[name].default)

    if early("data_dir"):
        data_dir = Path(early("data_dir")).expanduser()
        data_source = None
    else:
        data_dir, data_source = instance_location.resolve(environ)
    config_path = Path(early("config")) if early("config") else data_dir / "lessoncast.toml"
    file_values: dict[str, Any] = {}
    if config_path.is_file():
        try:
            file_values = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{config_path}: not valid TOML ({exc}). Fix the file or remove it.") from None
        stray = set(file_values) - set(BY_NAME)
        if stray:
            raise SettingsError(
                f"{config_path}: unknown settings {', '.join(sorted(stray))}. "
                f"Run 'lessoncast config' to list the valid names.")

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for s in SETTINGS:
        if s.name in overrides:
            values[s.name] = _parse(s, overrides[s.name], "arguments")
            sources[s.name] = "arguments"
        elif environ.get(s.env, "") != "":
            values[s.name] = _parse(s, environ[s.env], "the environment")
            sources[s.name] = "environment"
        elif s.name in file_values:
            values[s.name] = _parse(s, file_values[s.name], str(config_path))
            sources[s.name] = str(config_path)
        else:
            values[s.name] = s.default
            sources[s.name] = "default"
    if data_source is not None and sources["data_dir"] == "default":
        values["data_dir"], sources["data_dir"] = str(data_dir), data_source
    if not values["mqtt_server_port"]:
        values["mqtt_server_port"] = values["mqtt_port"] + 1
        sources["mqtt_server_port"] = "default (LESSONCAST_MQTT_PORT + 1)"
    return Settings(values, sources)
