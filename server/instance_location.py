"""Where the instance is: one absolute answer, whatever folder a command runs in.

In order: ``LESSONCAST_DATA_DIR`` (environment or arguments); else the instance ``lessoncast init`` or
``lessoncast run`` last recorded in ``$XDG_CONFIG_HOME/lessoncast/instance`` (``~/.config/lessoncast/instance``);
else ``$XDG_DATA_HOME/lessoncast`` (``~/.local/share/lessoncast``). A relative default made a command run from
another folder quietly create a second county, with its own admin and root key.

Only ``init`` and ``run`` create an instance; every other command refuses when there is none
(``server.cli.common.load_services``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional

SETTING = "LESSONCAST_DATA_DIR"


def _home(environ: Mapping[str, str]) -> Path:
    return Path(environ["HOME"]) if environ.get("HOME") else Path.home()


def record_path(environ: Mapping[str, str]) -> Path:
    """The file that records the instance ``init``/``run`` last used."""
    base = environ.get("XDG_CONFIG_HOME") or str(_home(environ) / ".config")
    return Path(base) / "lessoncast" / "instance"


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """The data directory when nothing is set or recorded."""
    base = environ.get("XDG_DATA_HOME") or str(_home(environ) / ".local" / "share")
    return Path(base) / "lessoncast"


def recorded(environ: Mapping[str, str]) -> Optional[Path]:
    """The instance recorded by the last ``init`` or ``run``, or None."""
    try:
        text = record_path(environ).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return Path(text) if text and Path(text).is_absolute() else None


def resolve(environ: Mapping[str, str]) -> tuple[Path, str]:
    """(data directory, where that came from) when LESSONCAST_DATA_DIR is not set: recorded, else the default."""
    path = recorded(environ)
    if path is not None:
        return path, f"recorded in {record_path(environ)}"
    return default_data_dir(environ), "default"


def record(data: Path, environ: Optional[Mapping[str, str]] = None) -> Path:
    """Record DATA (absolute) as the instance later commands use; return the record's path."""
    environ = os.environ if environ is None else environ
    path = record_path(environ)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".instance.{os.getpid()}")
    tmp.write_text(f"{data.resolve()}\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def exists(data: Path) -> bool:
    """Whether DATA holds an instance (``init`` writes its secret key first of all)."""
    return (data / "secret_key").is_file()
