"""Functions stay short enough to read at once (STYLE.md): none in the four rooms runs over ``LIMIT`` lines
(``def`` to its last line, docstring included) unless a ``# long:`` comment within the first ``WINDOW``
lines of its body (after the docstring, if any) says why. Read from the source with ``ast``; the comments
from the source lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("compress", "search", "profiles", "reports")
LIMIT = 60
WINDOW = 5


def _body_start(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> int:
    """The 1-based line where ``node``'s body begins: after its docstring, else after its signature."""
    first = node.body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return first.end_lineno + 1  # type: ignore[operator]
    start = first.lineno  # comments between the signature and the first statement belong to the body
    while start - 1 > node.lineno and (
        not lines[start - 2].strip() or lines[start - 2].strip().startswith("#")
    ):
        start -= 1
    return start


def long_functions(source: str, name: str = "<source>") -> list[str]:
    """``name:line function (N lines)`` for every function in ``source`` over ``LIMIT`` lines without a reason."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
        if length <= LIMIT:
            continue
        start = _body_start(node, lines)
        if not any(line.strip().startswith("# long:") for line in lines[start - 1 : start - 1 + WINDOW]):
            found.append(f"{name}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_runs_long_without_a_reason() -> None:
    bad = []
    for room in ROOMS:
        for path in sorted((ROOT / room).rglob("*.py")):
            bad += long_functions(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert not bad, (
        f"functions over {LIMIT} lines: split them along their seams, or say why they stay long in a "
        f"'# long: ...' comment in the first {WINDOW} lines of the body:\n" + "\n".join(bad)
    )


def test_the_check_counts_lines_and_reads_the_reason() -> None:
    def source(body_lines: int, *, docstring: bool, reason_at: int | None) -> str:
        body = [f"    x{i} = {i}" for i in range(body_lines)]
        if reason_at is not None:
            body.insert(reason_at, "    # long: a table of cases")
        head = ["def f():", *(['    """Doc."""'] if docstring else [])]
        return "\n".join([*head, *body]) + "\n"

    assert long_functions(source(58, docstring=True, reason_at=None)) == []  # 60 lines: def, docstring, body
    assert long_functions(source(59, docstring=True, reason_at=None)) == ["<source>:1 f (61 lines)"]
    assert long_functions(source(60, docstring=True, reason_at=4)) == []
    assert long_functions(source(60, docstring=True, reason_at=5)) != []  # past the first 5 lines
    assert long_functions(source(70, docstring=False, reason_at=0)) == []
