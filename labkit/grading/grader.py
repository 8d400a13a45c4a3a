"""Grade a submission in a separate process with a time and memory limit; never hang, never crash, never trust it.

Results come back on a signed channel (see channel.py and runner.py), never on the submission's stdout; a run
that tampers scores 0 with a 'tampering detected' message, and tests that did not report score 0.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, asdict
from pathlib import Path

import psutil

from labkit.grading.channel import ChannelLog, new_key, read_channel
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


def grade_notebook(path: Path, exercise: str | None = None, hidden: bool = False) -> GradeReport:
    """Grade the tagged cells of a student notebook against its exercise's tests (and hidden tests if asked)."""
    source, named = extract_solution(path)
    name = exercise or named
    if not name:
        raise ValueError(f"{path} does not say which exercise it is; pass --exercise NAME")
    return grade_source(get_exercise(name), source, hidden=hidden)


def grade_source(exercise: Exercise, source: str, hidden: bool = False) -> GradeReport:
    """Run the exercise's tests on `source` in a subprocess under its time and memory limits."""
    tests = [t.__name__ for t in (*exercise.tests, *(exercise.hidden_tests if hidden else ()))]
    with tempfile.TemporaryDirectory(prefix="labkit-grade-") as tmp:
        submission = Path(tmp) / "submission.py"
        submission.write_text(source)
        runs = _run_ranks(exercise, submission, Path(tmp), hidden)
    reports = [_report(exercise, tests, log, error) for log, error in runs]
    return reports[0] if len(reports) == 1 else _merge(reports)


def _report(exercise: Exercise, tests: list[str], log: ChannelLog, error: str | None) -> GradeReport:
    """One runner's report: every test listed, those that did not report scored 0."""
    report = GradeReport(exercise.name)
    tampering = _tampering(log, tests)
    if tampering:
        report.error = f"tampering detected: {tampering}"
        report.results = [TestResult(name, False, report.error) for name in tests]
        return report
    rows = [r for r in log.rows if r["kind"] == "test"]
    failed_import = [r["message"] for r in log.rows if r["kind"] == "import_error"]
    if failed_import:
        error = f"your code failed before any test ran: {failed_import[0]}"
    elif error is None and not log.done:
        error = "the grading process ended before every test reported (os._exit or sys.exit in your code?)"
    report.results = [TestResult(r["test"], bool(r["passed"]), str(r["message"]), float(r["seconds"])) for r in rows]
    report.results += [TestResult(name, False, f"not run: {error}") for name in tests[len(rows):]]
    report.error = error
    return report


def _merge(reports: list[GradeReport]) -> GradeReport:
    """One report for a multi-rank run: a test passes only if it passed on every rank; the first failure is named."""
    merged = GradeReport(reports[0].exercise)
    errors = [(rank, r.error) for rank, r in enumerate(reports) if r.error]
    errors.sort(key=lambda item: not item[1].startswith("tampering detected"))  # tampering first, as it voids all
    if errors:
        rank, error = errors[0]
        merged.error = error.replace("tampering detected", f"tampering detected (rank {rank})", 1) if \
            error.startswith("tampering detected") else f"rank {rank}: {error}"
    for rows in zip(*(r.results for r in reports)):
        failed = [(rank, row) for rank, row in enumerate(rows) if not row.passed]
        message = "ok" if not failed else (failed[0][1].message if failed[0][1].message.startswith("tampering")
                                           else f"rank {failed[0][0]}: {failed[0][1].message}")
        merged.results.append(TestResult(rows[0].name, not failed, message, max(row.seconds for row in rows)))
    return merged


def _run_ranks(exercise: Exercise, submission: Path, cwd: Path, hidden: bool) -> list[tuple[ChannelLog, str | None]]:
    """One runner, or `exercise.world_size` runners at once that meet at a free loopback port (one per rank)."""
    if exercise.world_size == 1:
        return [_run_limited(exercise, submission, cwd, hidden)]
    with socket.socket() as sock:  # the OS picks a free port; the ranks' process group listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    runs: list = [None] * exercise.world_size

    def run(rank: int) -> None:
        env = {"LABKIT_RANK": str(rank), "LABKIT_WORLD_SIZE": str(exercise.world_size),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        runs[rank] = _run_limited(exercise, submission, cwd, hidden, env)

    threads = [threading.Thread(target=run, args=(rank,)) for rank in range(exercise.world_size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return runs


def _tampering(log: ChannelLog, tests: list[str]) -> str | None:
    """What the channel shows of tampering: a refused action, a forged row, or rows out of order."""
    found = [str(r.get("what")) for r in log.rows if r["kind"] == "tamper"] + log.problems
    names = [r.get("test") for r in log.rows if r["kind"] == "test"]
    if names != tests[:len(names)]:
        found.append("result rows that do not match the tests in order")
    return "; ".join(dict.fromkeys(found)) or None


def _run_limited(exercise: Exercise, submission: Path, cwd: Path, hidden: bool,
                 extra_env: dict[str, str] | None = None) -> tuple[ChannelLog, str | None]:
    """Start the runner with a fresh key, watch wall time and memory, kill it past either; read the channel."""
    # One thread: small models train faster without thread sync, and grades do not depend on core count.
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
           **(extra_env or {})}
    key = new_key()
    read_fd, write_fd = os.pipe()
    argv = [sys.executable, "-m", "labkit.grading.runner", exercise.name, str(submission), str(write_fd)]
    try:
        proc = subprocess.Popen(argv + (["--hidden"] if hidden else []), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env,
                                pass_fds=(write_fd,))
    finally:
        os.close(write_fd)  # only the runner holds the write end: the pipe ends when it does
    proc.stdin.write(key + b"\n")
    proc.stdin.close()
    channel = bytearray()
    tail: list[str] = []
    forged: list[str] = []
    readers = [threading.Thread(target=_collect_bytes, args=(read_fd, channel), daemon=True),
               threading.Thread(target=_collect_tail, args=(proc.stdout, tail, forged), daemon=True),
               threading.Thread(target=_collect_tail, args=(proc.stderr, tail), daemon=True)]
    for reader in readers:
        reader.start()
    error = _watch(proc, exercise.time_limit_s, exercise.memory_limit_mb)
    for reader in readers:
        reader.join(timeout=5)
    log = read_channel(key, bytes(channel))
    if forged:  # the runner never writes results on stdout: a row there was written by the submission
        log.problems.append(f"forged result rows on stdout ({len(forged)}; results never travel there)")
    if error is None and proc.returncode != 0:
        text = " | ".join(tail[-3:]).strip()
        error = f"the grading process exited with code {proc.returncode}" + (f": {text}" if text else "")
    return log, error


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
    proc.kill()  # SIGKILL: a submission cannot catch, ignore or delay it
    proc.wait()


def _collect_bytes(fd: int, into: bytearray, limit_bytes: int = 4 * 2**20) -> None:
    """Everything on the results pipe (a flood past the limit is cut, and then fails verification)."""
    with os.fdopen(fd, "rb", buffering=0) as stream:
        while chunk := stream.read(65536):
            if len(into) < limit_bytes:
                into += chunk


def _collect_tail(stream, tail: list[str], forged: list[str] | None = None) -> None:
    """The last lines of a stream; on stdout, also any line shaped like an old-style result row."""
    for line in stream:
        text = line.decode(errors="replace").rstrip()
        tail.append(text)
        del tail[:-20]
        if forged is not None and _looks_like_a_row(text):
            forged.append(text)


def _looks_like_a_row(text: str) -> bool:
    try:
        row = json.loads(text)
    except ValueError:
        return False
    return isinstance(row, dict) and {"test", "passed"} <= set(row)
