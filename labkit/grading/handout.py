"""Student notebooks and interviewer handouts, generated from an exercise definition (never its solution)."""
from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from labkit.grading.grader import SOLUTION_TAG
from labkit.grading.registry import Exercise


def student_notebook(exercise: Exercise) -> nbformat.NotebookNode:
    """Task, the stub in a cell tagged 'solution', a try-it cell, and how grading works."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["labkit"] = {"exercise": exercise.name, "kind": exercise.kind}
    how = (f"Grade it with `labkit grade {exercise.notebook.name}` (or `labkit grade PATH --json`). The grader "
           f"runs only the cells tagged `{SOLUTION_TAG}`, in a separate process limited to "
           f"{exercise.time_limit_s:g} s and {exercise.memory_limit_mb} MB, and prints one line per test.")
    cells = [new_markdown_cell(f"# {exercise.title}\n\n{exercise.task.strip()}\n\n{how}"),
             new_code_cell(exercise.stub.strip(), metadata={"tags": [SOLUTION_TAG]}),
             new_markdown_cell("Try your code here (these cells are not graded)."),
             new_code_cell("")]
    nb.cells = cells
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"c{i:02d}"
    return nb


def write_student_notebook(exercise: Exercise, path: Path | None = None) -> Path:
    path = Path(path or exercise.notebook)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(student_notebook(exercise), path)
    return path


def write_handout(exercise: Exercise, out_dir: Path) -> Path:
    """A self-contained folder for a candidate: notebook, visible tests, README; no reference solution."""
    out_dir = Path(out_dir) / exercise.name
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    write_student_notebook(exercise, out_dir / f"{exercise.name}.ipynb")
    tests_source = inspect.getsource(inspect.getmodule(exercise.tests[0]))
    (out_dir / f"{exercise.name}_tests.py").write_text(tests_source)
    test_list = "\n".join(f"- `{t.__name__}`: {(t.__doc__ or '').strip()}" for t in exercise.tests)
    (out_dir / "README.md").write_text(
        f"# {exercise.title}\n\n{exercise.task.strip()}\n\n## How it is graded\n"
        f"Fill in the cells tagged `{SOLUTION_TAG}` in `{exercise.name}.ipynb`, then run\n\n"
        f"    labkit grade {exercise.name}.ipynb\n\n"
        f"(`labkit` comes with the Fast-under-load course: `make lab` in its repository installs it). "
        f"Your cells run in a separate process limited to {exercise.time_limit_s:g} s and "
        f"{exercise.memory_limit_mb} MB. The tests, all visible in `{exercise.name}_tests.py`:\n\n{test_list}\n"
        f"\nScore = tests passed / tests.\n")
    return out_dir


def write_all_student_notebooks() -> list[Path]:
    """Regenerate notebooks/exercises/ from the exercise definitions (run after editing an exercise)."""
    from labkit.grading.registry import all_exercises

    return [write_student_notebook(e) for e in all_exercises()]


if __name__ == "__main__":
    for written in write_all_student_notebooks():
        print(f"wrote {written}")
