"""Runs inside the grading subprocess: import the submission, run each test, send one signed row per test.

Not for direct use: `labkit grade` starts it with a time and memory limit, the run's key on stdin and the
results pipe's file descriptor in argv. Order matters: read the key and close stdin, import every test and
oracle, snapshot them, drop the protected modules from sys.modules, install the audit hook, and only then
import the submission. Rows leave only through `send` called from `main`'s own frame (the hook checks).
"""
from __future__ import annotations

import importlib.util
import json
import linecache
import os
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass

from labkit.grading import guard
from labkit.grading.registry import get_exercise

ALWAYS_PROTECTED = ("labkit.solutions", "labkit.exercises", "labkit.hidden_tests", "labkit.grading")
LABKIT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(guard.__file__)))


def send(kind: str, /, **fields) -> None:
    """Hand a row to the audit hook, which signs it and writes it on the results channel."""
    sys.audit(guard.ROW_EVENT, json.dumps({"kind": kind, **fields}))


def describe(err: BaseException, submission_path: str) -> str:
    """'TypeError: …' plus the line of the student's file where it happened, if any."""
    # Look up source lines of the student's frames only: the tests' files are out of bounds once it runs.
    summary = traceback.StackSummary.extract(traceback.walk_tb(err.__traceback__), lookup_lines=False)
    frames = [f for f in summary if f.filename == submission_path]
    where = f" (your line {frames[-1].lineno}: {frames[-1].line})" if frames else ""
    text = _text(err)
    if isinstance(err, NotImplementedError):
        return f"not implemented yet: {text}{where}"
    return f"{type(err).__name__}: {text}{where}"


def _text(err: BaseException) -> str:
    """str(err), which runs the submission's __str__ for its own exceptions: it may raise."""
    try:
        return str(err)
    except BaseException:
        return "(an exception whose message could not be shown)"


def protected_paths(protected_modules: tuple[str, ...]) -> tuple[str, ...]:
    """Files and folders of the protected modules, found without importing them."""
    paths = []
    for name in protected_modules:
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        paths += list(spec.submodule_search_locations or []) or [spec.origin]
    return tuple(p for p in paths if p)


def load(submission_path: str):
    spec = importlib.util.spec_from_file_location(guard.SUBMISSION_MODULE, submission_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[guard.SUBMISSION_MODULE] = module
    spec.loader.exec_module(module)
    return module


def run_test(test, module, submission_path: str) -> dict:
    start = time.perf_counter()
    try:
        test(module)
        passed, message = True, "ok"
    except AssertionError as err:
        passed, message = False, _text(err) or "assertion failed"
    except BaseException as err:  # the submission may raise anything, SystemExit and KeyboardInterrupt included
        passed, message = False, describe(err, submission_path)
    return {"test": test.__name__, "passed": passed, "message": message, "seconds": time.perf_counter() - start}


def tampered(shots, handlers: dict, threads: set[int], submission_path: str) -> str | None:
    """What changed since the snapshot, if anything: patched modules, signal handlers, threads left running."""
    patched = guard.changed(shots)
    if patched:
        return "monkeypatched " + ", ".join(patched)
    if guard.signal_handlers() != handlers:
        return "changed a signal handler"
    left = guard.threads_running(submission_path, known=threads)
    if left:  # its code running between the grader's checks could patch and restore unseen
        return f"left {len(left)} thread(s) running its code after a test ({', '.join(left[:3])})"
    return None


@dataclass(frozen=True)
class Setup:
    """What main needs once the tests are loaded and the defences are up."""
    tests: tuple
    graded_names: tuple[str, ...]
    shots: list
    handlers: dict
    threads: set[int]  # idents of the threads alive before the submission


def read_key() -> bytes:
    """The run's key from stdin (one line), then stdin is closed: read before any student code exists."""
    data = b""
    while not data.endswith(b"\n") and (chunk := os.read(0, 256)):
        data += chunk
    os.close(0)
    os.open(os.devnull, os.O_RDONLY)  # fd 0 again, so nothing else lands on it
    return data.strip()


def prepare(exercise_name: str, hidden: bool, submission_path: str, channel_fd: int, main_frame) -> Setup:
    """Load the tests, snapshot them, drop what the submission may not reach, install the audit hook."""
    key = read_key()
    sys.stdout = sys.stderr  # student prints go to stderr; results never travel on stdout anyway
    exercise = get_exercise(exercise_name)
    tests = tuple(exercise.tests) + (tuple(exercise.hidden_tests) if hidden else ())
    if exercise.prepare is not None:
        exercise.prepare()  # expected values, computed while nothing can patch the oracle
    protected = ALWAYS_PROTECTED + tuple(exercise.protected_modules)
    paths = (*protected_paths(protected), os.path.join(LABKIT_DIR, "hidden_tests"))
    # Out of sys.modules: the answers, the tests (they hold the oracle), the hidden tests, the grader. A new
    # import of them is then an audit event the hook sees; the tests keep their own references.
    evicted = guard.evict(protected)
    setup = Setup(tests, exercise.graded_names, guard.snapshot(extra=evicted), guard.signal_handlers(),
                  {t.ident for t in threading.enumerate()})
    linecache.clearcache()
    guard.blank_sources([*sys.modules.values(), *evicted], tuple(os.path.realpath(p) for p in paths))
    # Printing a warning reads its source line, and warnings can point into the tests' files: the grader
    # does not print them (a submission could otherwise make one show any line of a protected file).
    warnings.simplefilter("ignore")
    answers = ("labkit.solutions", *exercise.protected_modules)
    guard.install(key, channel_fd, submission_path, protected, answers, paths, send, main_frame)
    return setup


def main(exercise_name: str, submission_path: str, channel_fd: int, hidden: bool) -> None:
    setup = prepare(exercise_name, hidden, submission_path, channel_fd, sys._getframe())
    try:
        module = load(submission_path)
    except BaseException as err:  # SyntaxError, SystemExit, anything the student's code raised
        send("import_error", message=describe(err, submission_path))
        return
    foreign = guard.foreign_graded(module, setup.graded_names, submission_path)
    what = tampered(setup.shots, setup.handlers, setup.threads, submission_path) or (
        foreign and "graded code not written in the submission: " + ", ".join(foreign))
    if what:
        send("tamper", what=what)
        return
    for test in setup.tests:
        row = run_test(test, module, submission_path)
        what = tampered(setup.shots, setup.handlers, setup.threads, submission_path)
        if what:
            send("tamper", what=what)
            return
        send("test", **row)
    send("done")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), "--hidden" in sys.argv[4:])
