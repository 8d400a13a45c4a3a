"""Run the course notebooks (papermill) and keep them committed without outputs."""
from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat

from labkit.paths import NOTEBOOK_DIR

EXECUTED_DIR = NOTEBOOK_DIR / "executed"
CHECK_MARK = "NBVAL_CHECK_OUTPUT"


def course_notebooks(directory: Path = NOTEBOOK_DIR) -> list[Path]:
    """The numbered notebooks (00_…, 01_…) in course order."""
    return sorted(p for p in directory.glob("[0-9][0-9]_*.ipynb"))


def is_checked(cell) -> bool:
    """True for the cells whose stored output nbval compares."""
    return CHECK_MARK in cell.source or "nbval-check-output" in cell.metadata.get("tags", [])


def unstripped_cells(path: Path) -> list[int]:
    """Indices of code cells that carry outputs or execution counts but are not nbval-checked."""
    nb = nbformat.read(path, as_version=4)
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
            and (c.get("outputs") or c.get("execution_count")) and not is_checked(c)]


def strip_outputs(path: Path) -> bool:
    """Remove outputs and execution counts (keeping nbval-checked cells' outputs); True if the file changed."""
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    for cell in nb.cells:
        if cell.cell_type == "code" and not is_checked(cell):
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    nb.metadata.pop("papermill", None)
    after = nbformat.writes(nb)
    if after != before:
        path.write_text(after)
    return after != before


def execute(path: Path, fast: bool, out_dir: Path = EXECUTED_DIR, timeout_s: int = 1800) -> tuple[Path, float]:
    """Execute one notebook top to bottom on a fresh kernel; returns the executed copy and seconds taken."""
    import papermill  # imported here: heavy, and only the runner needs it

    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / path.name
    start = time.perf_counter()
    # The parameters cell derives sizes from LABKIT_FAST in the same cell, so the kernel's environment
    # must agree with the injected FAST value, or a "fast" run would use full sizes.
    previous = os.environ.get("LABKIT_FAST")
    os.environ["LABKIT_FAST"] = "1" if fast else "0"
    try:
        papermill.execute_notebook(str(path), str(out), parameters={"FAST": fast}, cwd=str(path.parent),
                                   kernel_name="python3", progress_bar=False, execution_timeout=timeout_s)
    finally:
        if previous is None:
            os.environ.pop("LABKIT_FAST", None)
        else:
            os.environ["LABKIT_FAST"] = previous
    return out, time.perf_counter() - start
