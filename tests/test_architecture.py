"""The rooms and their arrows (DESIGN.md): ``reports → search → {compress, profiles}``; ``profiles`` imports
nothing of the others; ``compress`` imports only ``profiles`` (the error classes and scheme names); only
``compress.cli`` imports all four. Read from the source with ``ast`` (every import, at module level or inside
a function), so a cycle cannot hide behind a lazy import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("compress", "search", "profiles", "reports")
ALLOWED = {
    "reports": {"reports", "search", "compress", "profiles"},
    "search": {"search", "compress", "profiles"},
    "compress": {"compress", "profiles"},
    "profiles": {"profiles"},
}


def _modules(room: str) -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / room).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, and ``module.name`` for each ``from module import name``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}: relative import (the project imports by absolute name)"
            found.add(node.module or "")
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("room", ROOMS)
def test_rooms_import_only_along_the_arrows(room: str) -> None:
    bad = []
    for module, path in _modules(room).items():
        if module.startswith("compress.cli"):
            continue  # the one module that imports all four rooms
        for name in _imports(path):
            top = name.split(".")[0]
            if top in ROOMS and top not in ALLOWED[room]:
                bad.append(f"{module} imports {name}")
    assert not bad, "\n".join(bad)


def test_no_import_cycle_inside_search() -> None:
    """search/'s modules form no cycle, counting imports inside functions (the package ``__init__`` aside)."""
    mods = {m: p for m, p in _modules("search").items() if m != "search"}
    graph = {m: {n for n in _imports(p) if n in mods and n != m} for m, p in mods.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " → ".join([*path[path.index(n) :], n]))
            if n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_no_module_reaches_into_another_rooms_privates() -> None:
    """``room._private`` is for its own room: other rooms (the CLI included) use the room's public names."""
    bad = []
    for room in ROOMS:
        for module, path in _modules(room).items():
            for name in _imports(path):
                parts = name.split(".")
                if parts[0] in ROOMS and parts[0] != room and len(parts) > 1 and parts[1].startswith("_"):
                    bad.append(f"{module} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_run_directory_contract_maps_every_model_output_to_its_head() -> None:
    from compress.model import HEAD_OUTPUTS
    from search.rundir import OUTPUT_TASK, head_of

    assert OUTPUT_TASK == {out: task for task, outs in HEAD_OUTPUTS.items() for out in outs}
    assert head_of("shared") == "backbone" and head_of("tags") == "tagging"
    assert head_of("det_heatmap+det_box") == "detection"
    assert head_of("tags+saliency") == "backbone (saliency+tagging)"


def test_reports_read_the_format_search_writes() -> None:
    import reports
    import search.rundir

    assert reports.FORMAT is search.rundir.FORMAT


def test_no_module_imports_another_modules_private_names() -> None:
    """``from x import _name`` is for a name's own module: helpers another module needs carry a public name
    (a room's internal modules, ``from reports import _figures``, are fine)."""
    bad = []
    for room in ROOMS:
        for module, path in _modules(room).items():
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.ImportFrom) or (node.module or "").split(".")[0] not in ROOMS:
                    continue
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    is_module = (ROOT / target.replace(".", "/")).with_suffix(".py").is_file()
                    if alias.name.startswith("_") and alias.name != "__version__" and not is_module:
                        bad.append(f"{module} imports {target}")
    assert not bad, "\n".join(bad)
