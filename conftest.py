"""pytest hooks for the notebook run: nbval executes each notebook once; this adds a per-notebook summary.

`make test` runs the unit tests and the notebooks (`--nbval-lax`) in one pytest session. nbval reports one item
per cell; the table printed at the end adds the cells up per notebook: wall time (kernel start included), cells
passed and the `assert` statements in the cells that passed, against the fast-mode budget.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

FAST_BUDGET_S = 90.0   # DESIGN.md: a notebook's fast mode stays within 90 s on 2 cores (new ones: 60 s)

_seconds: dict[str, float] = defaultdict(float)
_cells: dict[str, list[int]] = defaultdict(lambda: [0, 0])   # notebook -> [cells passed, cells run]
_asserts: dict[str, int] = defaultdict(int)


def count_asserts(source: str) -> int:
    """`assert` statements in one cell's source (0 if it is not plain Python, e.g. a %magic line)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return 0
    return sum(isinstance(node, ast.Assert) for node in ast.walk(tree))


def pytest_runtest_logreport(report) -> None:
    path = report.nodeid.split("::")[0]
    if not path.endswith(".ipynb"):
        return
    _seconds[path] += report.duration
    if report.when == "call":
        _cells[path][1] += 1
        _cells[path][0] += report.passed


def pytest_runtest_makereport(item, call) -> None:
    cell = getattr(item, "cell", None)
    if call.when == "call" and call.excinfo is None and cell is not None:
        _asserts[item.nodeid.split("::")[0]] += count_asserts(cell.source)


def pytest_terminal_summary(terminalreporter) -> None:
    if not _seconds:
        return
    write = terminalreporter.write_line
    terminalreporter.section("notebooks (each executed once, fast mode)")
    for path in sorted(_seconds):
        passed, run = _cells[path]
        over = "  OVER BUDGET" if _seconds[path] > FAST_BUDGET_S else ""
        write(f"{Path(path).stem:<40} {_seconds[path]:6.1f} s  cells {passed}/{run}  "
              f"asserts run {_asserts[path]:3d}{over}")
    write(f"{'total':<40} {sum(_seconds.values()):6.1f} s  asserts run {sum(_asserts.values())}")
