"""Grading is honest: references score 100%, stubs 0, bugs fail their bug's test; the grader never hangs."""
import dataclasses
import json
from pathlib import Path

import nbformat
import pytest

from labkit import cli, grading
from labkit.grading.grader import extract_solution
from labkit.grading.handout import student_notebook, write_handout

EXERCISES = grading.all_exercises()
ids = [e.name for e in EXERCISES]


# One grading run per submission covers the visible and the hidden tests (each run is a fresh, limited process
# that imports torch: about 2-3 s, so separate runs for the hidden tests would double the suite's grading time).
@pytest.mark.parametrize("exercise", EXERCISES, ids=ids)
def test_reference_scores_full_marks_on_visible_and_hidden_tests(exercise):
    report = grading.grade_source(exercise, exercise.reference_source(), hidden=True)
    assert report.score == 1.0, report.format()
    names = {r.name for r in report.results}
    assert {t.__name__ for t in (*exercise.tests, *exercise.hidden_tests)} <= names, report.format()


@pytest.mark.parametrize("exercise", EXERCISES, ids=ids)
def test_untouched_stub_fails_visible_and_hidden_tests(exercise):
    report = grading.grade_source(exercise, exercise.stub, hidden=True)
    failed = {r.name for r in report.results if not r.passed}
    assert {t.__name__ for t in exercise.hidden_tests} <= failed, report.format()
    if exercise.kind == "bug":
        assert exercise.bug_tests, f"{exercise.name}: a find-the-bug item must name the tests aimed at its bug"
        assert set(exercise.bug_tests) <= failed, report.format()
    else:
        assert report.passed == 0, report.format()


@pytest.mark.parametrize("exercise", EXERCISES, ids=ids)
def test_committed_notebook_is_the_generated_stub(exercise):
    assert exercise.notebook.exists(), f"run `python -m labkit.grading.handout` to write {exercise.notebook}"
    source, name = extract_solution(exercise.notebook)
    assert name == exercise.name and source.strip() == exercise.stub.strip()
    assert nbformat.writes(nbformat.read(exercise.notebook, 4)) == nbformat.writes(student_notebook(exercise))
    assert "labkit.solutions" not in exercise.notebook.read_text()


def test_there_are_enough_exercises_and_bugs():
    kinds = [e.kind for e in EXERCISES]
    assert kinds.count("exercise") >= 7 and kinds.count("bug") >= 9


def quick(exercise, **limits):
    return dataclasses.replace(exercise, **limits)


def test_infinite_loop_is_stopped_with_a_clear_message():
    report = grading.grade_source(quick(EXERCISES[0], time_limit_s=8), "while True:\n    pass\n")
    assert report.score == 0 and "time limit of 8 s exceeded" in report.error


def test_memory_hog_is_stopped():
    report = grading.grade_source(quick(EXERCISES[0], memory_limit_mb=600), "x = bytearray(2 * 2**30)\n")
    assert report.score == 0 and "memory limit" in report.error


def test_syntax_error_and_exit_are_reported_not_raised():
    report = grading.grade_source(EXERCISES[0], "def broken(:\n")
    assert "SyntaxError" in report.error and report.score == 0
    report = grading.grade_source(EXERCISES[0], "import os\nos._exit(3)\n")
    assert "exited with code 3" in report.error


def test_student_prints_cannot_forge_results():
    fake = json.dumps({"test": EXERCISES[0].tests[0].__name__, "passed": True, "message": "ok", "seconds": 0})
    report = grading.grade_source(EXERCISES[0], f"print({fake!r})\n" + EXERCISES[0].stub)
    assert report.passed == 0 or EXERCISES[0].kind == "bug"


def test_notebook_without_tagged_cells(tmp_path):
    path = tmp_path / "empty.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), path)
    with pytest.raises(ValueError, match="no cell tagged 'solution'"):
        grading.grade_notebook(path)
    with pytest.raises(FileNotFoundError):
        grading.grade_notebook(tmp_path / "missing.ipynb")


def test_unknown_exercise_names_the_choices():
    with pytest.raises(KeyError, match="choose one of"):
        grading.get_exercise("nope")


def test_handout_has_no_solution(tmp_path):
    exercise = EXERCISES[0]
    out = write_handout(exercise, tmp_path)
    files = {p.name: p.read_text() for p in out.iterdir()}
    assert set(files) == {f"{exercise.name}.ipynb", f"{exercise.name}_tests.py", "README.md"}
    body = [line for line in exercise.reference_source().splitlines() if len(line.strip()) > 25
            and line not in exercise.stub]
    for text in files.values():
        assert "labkit.solutions" not in text
        assert not any(line in text for line in body), "a handout leaks reference solution lines"


def test_cli_list_and_grade(capsys, tmp_path):
    assert cli.main(["grade", "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(EXERCISES) >= 7
    exercise = EXERCISES[0]
    assert cli.main(["grade", str(exercise.notebook), "--json"]) == 2  # the untouched stub
    report = json.loads(capsys.readouterr().out)
    assert report["exercise"] == exercise.name and report["score"] < 1


def test_toy_blobs_and_trainer():
    import torch
    from torch import nn

    from labkit.grading.toys import blobs, train_full_batch

    X, y = blobs(60, features=8, classes=3, noise=0.5, seed=0)
    assert X.shape == (60, 8) and set(y.tolist()) == {0, 1, 2}
    assert torch.equal(X, blobs(60, 8, 3, 0.5, seed=0)[0]), "same seed, same data"
    model = train_full_batch(nn.Linear(8, 3), X, y, lr=0.05)
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert (model(X).argmax(1) == y).float().mean() > 0.9
    with pytest.raises(ValueError, match="classes <= features"):
        blobs(10, features=2, classes=3, noise=0.5, seed=0)


HIDDEN = [e for e in EXERCISES if e.hidden_tests]


def test_every_exercise_has_hidden_tests():
    missing = [e.name for e in EXERCISES if not e.hidden_tests]
    assert not missing and len(HIDDEN) >= 10, f"exercises without hidden tests: {missing}"


@pytest.mark.parametrize("exercise", HIDDEN, ids=[e.name for e in HIDDEN])
def test_handout_never_holds_hidden_tests(exercise, tmp_path):
    import inspect
    import subprocess
    import sys

    out = write_handout(exercise, tmp_path)
    text = "\n".join(p.read_text() for p in out.iterdir())
    assert "hidden_tests" not in text
    for test in exercise.hidden_tests:
        assert test.__name__ not in text, f"{test.__name__} is named in the handout"
        visible = inspect.getsource(inspect.getmodule(exercise.tests[0]))
        body = [line for line in inspect.getsource(test).splitlines()[1:] if len(line.strip()) > 30
                and line not in visible]  # lines of its own, not calls of shared helpers
        assert body, f"{test.__name__} has no line of its own to look for"
        assert not any(line in text for line in body), f"{test.__name__}'s source is in the handout"
    # running the handout's tests file loads no hidden test
    check = ("import runpy, sys; runpy.run_path(sys.argv[1]); "
             "assert not [m for m in sys.modules if m.startswith('labkit.hidden_tests')], 'hidden tests loaded'")
    done = subprocess.run([sys.executable, "-c", check, str(out / f"{exercise.name}_tests.py")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_registry_imports_no_exercise_and_no_cycle():
    """exercises import grading.exercise; the registry imports exercises only when asked"""
    import subprocess
    import sys

    check = ("import sys, labkit.grading.registry, labkit.grading; "
             "assert not [m for m in sys.modules if m.startswith('labkit.exercises')], 'exercises imported'; "
             "import labkit.exercises.metrics_module as m; assert m.EXERCISE.name == 'metrics_module'")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "labkit.grading.registry" not in Path(grading.__file__).with_name("exercise.py").read_text()


def test_cli_grade_hidden(capsys):
    exercise = grading.get_exercise("metrics_module")
    assert cli.main(["grade", str(exercise.notebook), "--json", "--hidden"]) == 2  # the untouched stub
    report = json.loads(capsys.readouterr().out)
    assert len(report["results"]) == len(exercise.tests) + len(exercise.hidden_tests) and report["score"] == 0
