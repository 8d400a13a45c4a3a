"""Grade a submission in a separate process with a time and memory limit; never hang, never crash."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, asdict
from pathlib import Path

import psutil

from labkit.grading.registry import Exercise, get_exercise

SOLUTION_TAG = "solution"


@dataclass
class TestResult:
    name: str
    passed: bool
    message: str
    seconds: float = 0.0


@dataclass
class GradeReport:
    exercise: str
    results: list[TestResult] = field(default_factory=list)
    error: str | None = None   # what stopped grading early (import error, time or memory limit)

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def score(self) -> float:
        """Fraction of tests passed, 0..1."""
        return self.passed / len(self.results) if self.results else 0.0

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "score": self.score, "passed": self.passed}, indent=2)

    def format(self) -> str:
        lines = [f"Grading {self.exercise}"]
        if self.error:
            lines.append(f"  ! {self.error}")
        lines += [f"  {'PASS' if r.passed else 'FAIL'}  {r.name}" + ("" if r.passed else f": {r.message}")
                  for r in self.results]
        lines.append(f"Score: {self.passed}/{len(self.results)} ({self.score:.0%})")
        return "\n".join(lines)


def extract_solution(path: Path) -> tuple[str, str | None]:
    """The source of the notebook's cells tagged 'solution', and the exercise name in its metadata."""
    import nbformat  # imported here: the grading subprocess imports this module and need not pay for it

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no notebook at {path}")
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as err:
        raise ValueError(f"{path} is not a readable notebook: {err}") from err
    cells = [c.source for c in nb.cells if c.cell_type == "code" and SOLUTION_TAG in c.metadata.get("tags", [])]
    if not cells:
        raise ValueError(f"{path} has no cell tagged {SOLUTION_TAG!r}: write your answer in the tagged cells")
    return "\n\n".join(cells), nb.metadata.get("labkit", {}).get("exercise")


def grade_notebook(path: Path, exercise: str | None = None) -> GradeReport:
    """Grade the tagged cells of a student notebook against its exercise's tests."""
    source, named = extract_solution(path)
    name = exercise or named
    if not name:
        raise ValueError(f"{path} does not say which exercise it is; pass --exercise NAME")
    return grade_source(get_exercise(name), source)


def grade_source(exercise: Exercise, source: str) -> GradeReport:
    """Run the exercise's tests on `source` in a subprocess under its time and memory limits."""
    with tempfile.TemporaryDirectory(prefix="labkit-grade-") as tmp:
        submission = Path(tmp) / "submission.py"
        submission.write_text(source)
        rows, error = _run_limited(exercise, submission, Path(tmp))
    report = GradeReport(exercise.name)
    if rows and "import_error" in rows[0]:
        error = f"your code failed before any test ran: {rows[0]['import_error']}"
        rows = []
    report.results = [TestResult(r["test"], r["passed"], r["message"], r["seconds"]) for r in rows]
    done = {r.name for r in report.results}
    report.results += [TestResult(t.__name__, False, f"not run: {error}") for t in exercise.tests
                       if t.__name__ not in done]
    report.error = error
    return report


def _run_limited(exercise: Exercise, submission: Path, cwd: Path) -> tuple[list[dict], str | None]:
    """Start the runner, watch wall time and resident memory, kill it past either limit."""
    # One thread: small models train faster without thread sync, and grades do not depend on core count.
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "labkit.grading.runner", exercise.name, str(submission)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
    rows: list[dict] = []
    stderr_tail: list[str] = []
    readers = [threading.Thread(target=_collect_json, args=(proc.stdout, rows), daemon=True),
               threading.Thread(target=_collect_tail, args=(proc.stderr, stderr_tail), daemon=True)]
    for reader in readers:
        reader.start()
    error = _watch(proc, exercise.time_limit_s, exercise.memory_limit_mb)
    for reader in readers:
        reader.join(timeout=5)
    if error is None and proc.returncode != 0:
        tail = " | ".join(stderr_tail[-3:]).strip()
        error = f"the grading process exited with code {proc.returncode}" + (f": {tail}" if tail else "")
    return rows, error


def _watch(proc: subprocess.Popen, time_limit_s: float, memory_limit_mb: int) -> str | None:
    """Poll until the process ends; kill it and say why if it runs too long or uses too much memory."""
    start, watched = time.monotonic(), psutil.Process(proc.pid)
    while proc.poll() is None:
        if time.monotonic() - start > time_limit_s:
            _kill(proc)
            return f"time limit of {time_limit_s:g} s exceeded (an infinite loop, or far too slow)"
        try:
            rss_mb = sum(p.memory_info().rss for p in [watched, *watched.children(recursive=True)]) / 2**20
        except psutil.Error:
            rss_mb = 0.0
        if rss_mb > memory_limit_mb:
            _kill(proc)
            return f"memory limit of {memory_limit_mb} MB exceeded ({rss_mb:.0f} MB in use)"
        time.sleep(0.05)
    return None


def _kill(proc: subprocess.Popen) -> None:
    try:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
    except psutil.Error:
        pass
    proc.kill()
    proc.wait()


def _collect_json(stream, rows: list[dict]) -> None:
    for line in stream:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # only the runner writes to this stream; ignore anything malformed


def _collect_tail(stream, tail: list[str]) -> None:
    for line in stream:
        tail.append(line.rstrip())
        del tail[:-20]
