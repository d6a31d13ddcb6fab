"""The ports a stack binds, checked before anything starts: a port in use is an error that names the port, the
setting that moves it, and the program holding it when this machine can tell.

Without the check, a second stack (or any program on one of the ports) let ``lessoncast run`` say "running" while
the broker and web server crash-looped on "Address already in use".
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from server import nginx
from server.i18n import _
from server.settings import Settings


@dataclass(frozen=True)
class Port:
    """A port the stack binds: address, number, what listens there and the setting that moves it."""

    host: str
    port: int
    what: str  # a msgid: the listener in words
    setting: str  # the LESSONCAST_... variable
    derived_from: Optional[str] = None  # the setting it follows when not set itself (PORT + 1)


@dataclass(frozen=True)
class Clash:
    """A port the stack cannot bind, and what holds it when known."""

    port: Port
    holder_pid: Optional[int] = None
    holder: Optional[str] = None  # its command line
    reason: str = "in_use"  # in_use, twice (two settings give the same port), denied


def stack_ports(settings: Settings) -> list[Port]:
    """Every port ``lessoncast run`` binds with these settings."""
    ports: list[Port] = []
    if settings.nginx:
        ports.append(Port(settings.host, settings.port, _("web server (nginx)"), "LESSONCAST_PORT"))
        ports.append(Port("127.0.0.1", nginx.backend_port(settings), _("web server behind nginx (gunicorn)"),
                          "LESSONCAST_WEB_BACKEND_PORT",
                          None if settings.web_backend_port else "LESSONCAST_PORT"))
    else:
        ports.append(Port(settings.host, settings.port, _("web server (gunicorn)"), "LESSONCAST_PORT"))
    if not settings.mqtt_url:
        ports.append(Port(settings.mqtt_host, settings.mqtt_port, _("broker, device listener"), "LESSONCAST_MQTT_PORT"))
        derived = settings.sources.get("mqtt_server_port", "").startswith("default")
        ports.append(Port(settings.mqtt_server_host, settings.mqtt_server_port, _("broker, lessoncast's own listener"),
                          "LESSONCAST_MQTT_SERVER_PORT", "LESSONCAST_MQTT_PORT" if derived else None))
        if settings.mqtt_tls_port:
            ports.append(Port(settings.mqtt_host, settings.mqtt_tls_port, _("broker, TLS listener for devices"),
                              "LESSONCAST_MQTT_TLS_PORT"))
    return ports


def check(ports: list[Port]) -> list[Clash]:
    """The ports of PORTS that cannot be bound now, each with its holder when known; empty when all are free."""
    clashes: list[Clash] = []
    seen: dict[int, Port] = {}
    for port in ports:
        if port.port in seen:
            clashes.append(Clash(port, reason="twice"))
            continue
        seen[port.port] = port
        problem = _bind_error(port.host, port.port)
        if problem is None:
            continue
        if problem == errno.EADDRINUSE:
            pid, command = holder_of(port.port)
            clashes.append(Clash(port, pid, command))
        else:
            clashes.append(Clash(port, reason="denied"))
    return clashes


def _bind_error(host: str, port: int) -> Optional[int]:
    """The errno binding HOST:PORT gives (as the servers bind: SO_REUSEADDR, so TIME_WAIT is no clash), or None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno or errno.EADDRINUSE
    return None


def holder_of(port: int, proc: Path = Path("/proc")) -> tuple[Optional[int], Optional[str]]:
    """(pid, command line) of a process with a TCP socket bound to PORT, from /proc; (None, None) when it cannot
    be known (another user's process, not Linux)."""
    inodes = _socket_inodes(port, proc)
    if not inodes:
        return None, None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    raw = (entry / "cmdline").read_bytes()
                    return int(entry.name), raw.replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # gone, or not ours to look at
    return None, None


def _socket_inodes(port: int, proc: Path) -> set[str]:
    """Inodes of TCP sockets bound to local PORT, listeners first."""
    listening, bound = set(), set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or int(fields[1].rsplit(":", 1)[1], 16) != port:
                continue
            (listening if fields[3] == "0A" else bound).add(fields[9])
    return (listening or bound) - {"0"}
