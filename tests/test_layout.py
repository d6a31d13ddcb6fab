"""The layout holds: each package imports only what it may, no module import cycle exists, and inside server/
code imports across domains only in the directions docs/ARCHITECTURE.md draws."""

import ast
import re
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

# The layers of server/ and the layers each may import (the same table opens docs/ARCHITECTURE.md). A layer is a
# domain folder, except two modules that sit above the rest of their folder: the worker process, which runs the
# jobs of lessons and attendance while those create jobs through the leases below them, and enrolment, which
# publishes while publishing reads the device registry. Every layer may also import the top of server/ (app,
# settings, services, db, errors, ...) and any domain's models (the schema is one database); api and cli may
# import every layer.
LAYERS = {
    "api": "*",
    "console": "*",
    "cli": "*",
    "demo": {"devices", "lessons", "org", "programmes"},
    "training": {"accounts", "attendance", "devices", "org", "programmes"},
    "worker": {"agent_releases", "attendance", "health", "jobs", "lessons", "messaging", "programmes", "training"},
    "enrolment": {"devices", "messaging", "programmes"},
    "events": {"agent_releases", "attendance", "health", "messaging", "org"},
    "agent_releases": {"devices", "messaging", "programmes"},
    "health": {"messaging", "programmes"},
    "programmes": {"attendance", "devices", "messaging"},
    "devices": {"accounts", "messaging", "org"},
    "attendance": {"accounts", "jobs", "org"},
    "lessons": {"jobs"},
    "org": {"accounts"},
    "messaging": set(),
    "jobs": set(),
    "accounts": set(),
}
LAYER_OF_MODULE = {"server.jobs.worker": "worker", "server.jobs.runner": "worker",
                   "server.devices.enrolment": "enrolment"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for package in OURS for p in (ROOT / package).rglob("*.py")
           if "migrations" not in p.parts}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & OURS


def _imported_modules(name: str) -> set[str]:
    """Every module of ours that module NAME imports anywhere: at the top, inside functions, under TYPE_CHECKING.

    The lazy command table of ``lessoncast/cli.py`` names modules as strings for importlib, so it adds none."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target not in MODULES and "." in target:
                target = target.rpartition(".")[0]
            if target in MODULES and target != name:
                found.add(target)
    return found


GRAPH = {name: _imported_modules(name) for name in MODULES}


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


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_import_cycle():
    cycles = _cycles(GRAPH)
    detail = [{m: sorted(GRAPH[m] & set(cycle)) for m in cycle} for cycle in cycles]
    assert not cycles, f"modules that import each other (directly or around a loop): {detail}"


def test_the_cycle_check_sees_imports_inside_functions():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    # An import inside a function counts as much as one at the top (the CLI's lazy imports are edges too).
    assert "server.programmes.publish" in GRAPH["server.cli.programmes"]


def _layer(name: str):
    """The layer of a server module, or None for the top of server/ (app, settings, services, db, ...)."""
    if name in LAYER_OF_MODULE:
        return LAYER_OF_MODULE[name]
    parts = name.split(".")
    return parts[1] if parts[0] == "server" and len(parts) > 2 and parts[1] != "migrations" else None


def test_server_imports_across_domains_only_along_the_map():
    bad = []
    for name, imported in GRAPH.items():
        source = _layer(name)
        if source is None:
            continue
        for target_name in imported:
            target = _layer(target_name)
            if target is None or target == source or target_name.endswith(".models"):
                continue
            if LAYERS[source] != "*" and target not in LAYERS[source]:
                bad.append(f"{name} -> {target_name} ({source} -> {target})")
    assert not bad, ("imports in a direction docs/ARCHITECTURE.md does not draw; change the code, or the map in both "
                     f"the doc and LAYERS: {sorted(bad)}")


def test_every_server_package_is_a_layer_and_the_map_has_no_loop():
    packages = {p.name for p in (ROOT / "server").iterdir() if (p / "__init__.py").exists() and p.name != "migrations"}
    assert packages <= set(LAYERS), f"server packages the map does not place: {sorted(packages - set(LAYERS))}"
    narrow = {layer: set() if targets == "*" else set(targets) for layer, targets in LAYERS.items()}
    assert not _cycles(narrow), "the layers must form no loop"


def test_the_architecture_doc_draws_the_same_map():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    drawn = {}
    for line in text.splitlines():
        match = re.match(r"^\| `(\w+)` \|.*\| (.+) \|$", line)
        if match and match.group(1) in LAYERS:
            targets = match.group(2).strip()
            drawn[match.group(1)] = "*" if targets == "every layer" else (
                set() if targets == "nothing" else set(re.findall(r"`(\w+)`", targets)))
    assert drawn == LAYERS
