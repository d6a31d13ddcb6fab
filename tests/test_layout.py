"""The package boundaries of the design card hold: each package imports only what it may."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"lessoncast", "server", "media", "playlists", "device_agent", "firmware_stub"}
ALLOWED = {
    "media": set(),
    "playlists": set(),
    "firmware_stub": set(),
    "device_agent": {"playlists", "firmware_stub"},
    "server": {"media", "playlists"},
    "lessoncast": set(),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package):
    bad = {}
    for path in (ROOT / package).rglob("*.py"):
        stray = _imports(path) - ALLOWED[package] - {package}
        if stray:
            bad[str(path.relative_to(ROOT))] = sorted(stray)
    assert not bad, f"imports across the layout's boundaries: {bad}"


def test_every_module_says_what_it_is_for():
    missing = [str(p.relative_to(ROOT)) for pkg in ALLOWED for p in (ROOT / pkg).rglob("*.py")
               if "migrations/versions" not in str(p) and ast.get_docstring(ast.parse(p.read_text("utf-8"))) is None]
    assert not missing, f"modules without a docstring: {missing}"
