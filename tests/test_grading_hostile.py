"""Hostile submissions against `labkit grade` (metrics_module: fast): none scores above its honest content.

Each one is the untouched stub (honest content: 0 of 6) plus an attack; the report must say 0 and, where the
submission tampered, "tampering detected". One honest control shows the defences leave normal code alone.
"""
import ast
import dataclasses
import inspect
import json

import pytest

from labkit import grading

EX = grading.get_exercise("metrics_module")
STUB = EX.stub
ROW = json.dumps({"test": "test_accuracy", "passed": True, "message": "ok", "seconds": 0.0})


def grade(source: str, time_limit_s: float = 60.0, hidden: bool = False) -> grading.GradeReport:
    return grading.grade_source(dataclasses.replace(EX, time_limit_s=time_limit_s), source, hidden=hidden)


def assert_zero(report: grading.GradeReport, tampering: bool) -> None:
    assert report.passed == 0 and report.score == 0, report.format()
    assert len(report.results) == len(EX.tests), report.format()
    if tampering:
        assert report.error and report.error.startswith("tampering detected: "), report.format()
        assert all(r.message.startswith("tampering detected") for r in report.results), report.format()


# (name, attack code appended to the stub or put before it, tampering expected in the report)
ATTACKS = {
    "forge rows on stdout then os._exit": (
        f"import os, json\nfor t in {[t.__name__ for t in EX.tests]!r}:\n"
        "    os.write(1, (json.dumps({'test': t, 'passed': True, 'message': 'ok', 'seconds': 0}) + '\\n').encode())\n"
        "os._exit(0)\n", True),
    "forge rows on every other fd": (
        "import os\nfor fd in range(3, 40):\n    try:\n"
        f"        os.write(fd, ({ROW!r} + '\\t' + '0' * 64 + '\\n').encode())\n    except OSError:\n        pass\n",
        True),
    "forge rows on every fd then exit": (
        "import os, json, hmac, hashlib\nbody = json.dumps({'kind': 'done', 'seq': 0}, sort_keys=True).encode()\n"
        "for fd in range(3, 40):\n    try:\n"
        "        os.write(fd, body + b'\\t' + hmac.new(b'guess', body, hashlib.sha256).hexdigest().encode() + b'\\n')\n"
        "    except OSError:\n        pass\nos._exit(0)\n", True),
    "sign rows through the grader's audit event": (
        f"import sys\nsys.audit('labkit.grading.row', {json.dumps({'kind': 'test', **json.loads(ROW)})!r})\n", True),
    "sys.exit(0) at import": ("import sys\nsys.exit(0)\n", False),
    "os._exit(0) at import": ("import os\nos._exit(0)\n", False),
    "import the reference solution": ("from labkit.solutions.metrics_module import *\n", True),
    "import the worked implementation": (
        "from labkit.metrics import confusion_matrix as _cm\n"
        "def confusion_matrix(t, p, k):\n    return _cm(t, p, k)\n", True),
    "import the solution, catching the refusal": (
        "import importlib\ntry:\n    importlib.import_module('labkit.solutions.metrics_module')\n"
        "except BaseException:\n    pass\n", True),
    "open() the solution file": (
        "import labkit, os\n"
        "exec(open(os.path.join(os.path.dirname(labkit.__file__), 'solutions', 'metrics_module.py')).read())\n",
        True),
    "pathlib read_text of the solution, via a symlink": (
        "import labkit, os, pathlib, tempfile\n"
        "link = pathlib.Path(tempfile.mkdtemp()) / 'x.py'\n"
        "link.symlink_to(pathlib.Path(labkit.__file__).parent / 'solutions' / 'metrics_module.py')\n"
        "exec(link.read_text())\n", True),
    "importlib.resources on the solutions": (
        "import importlib.resources\n"
        "exec(importlib.resources.files('labkit.solutions').joinpath('metrics_module.py').read_text())\n", True),
    "read the hidden tests": (
        "import inspect, labkit.hidden_tests.metrics_module as m\nprint(inspect.getsource(m))\n", True),
    "read the tests' file from disk": (
        "import labkit.exercises.metrics_module as m\nprint(open(m.__file__).read())\n", True),
    "monkeypatch the oracle (sklearn)": (
        "import sklearn.metrics\nsklearn.metrics.f1_score = lambda *a, **k: 0.5\n"
        "sklearn.metrics.accuracy_score = lambda *a, **k: 0.5\n", True),
    "monkeypatch numpy's comparisons": (
        "import numpy, numpy.testing\nnumpy.testing.assert_allclose = lambda *a, **k: None\n"
        "numpy.isclose = lambda *a, **k: True\nnumpy.array_equal = lambda *a, **k: True\n", True),
    "monkeypatch the tests through the registry": (
        "from labkit.grading.registry import get_exercise\n"
        "ex = get_exercise('metrics_module')\nobject.__setattr__(ex, 'tests', ())\n", True),
    "replace test functions in the tests module": (
        "import labkit.exercises.metrics_module as m\nm.test_f1 = m.test_no_sklearn = lambda sub: None\n", True),
    "replace a test's code": (
        "import labkit.exercises.metrics_module as m\nm.test_f1.__code__ = (lambda sub: None).__code__\n", True),
    "patch the tests found in sys.modules (they are gone)": (
        "import sys\nfor name, mod in list(sys.modules.items()):\n"
        "    if hasattr(mod, 'test_f1') and hasattr(mod, 'test_no_sklearn'):\n"
        "        mod.test_f1 = mod.test_no_sklearn = lambda sub: None\n", False),
    "borrow the oracle through the tests module": (
        "import labkit.exercises.metrics_module as m\nf1 = lambda t, p, k: m.skm.f1_score(t, p, average='macro')\n",
        True),
    "walk gc for the key": ("import gc\nsecrets = [o for o in gc.get_objects() if isinstance(o, bytes)]\n", True),
    "walk frames for the key": (
        "import sys\nframe = sys._getframe()\nwhile frame.f_back:\n    frame = frame.f_back\n", True),
    "walk a traceback's frames inside a graded call": (
        "def accuracy(y_true, y_pred):\n    try:\n        raise ValueError\n    except ValueError as err:\n"
        "        frame = err.__traceback__.tb_frame\n    return 1.0\n", True),
    "spawn a process to write the channel": (
        "import subprocess, sys\n"
        "subprocess.run([sys.executable, '-c', 'import os; [os.write(fd, b\"x\") for fd in (3, 4, 5)]'])\n", True),
    "add a second audit hook": ("import sys\nsys.addaudithook(lambda event, args: None)\n", True),
    "read memory with ctypes": ("import ctypes\nctypes.string_at(id(ctypes), 8)\n", True),
    "graded function borrowed from scikit-learn": (
        "from sklearn.metrics import accuracy_score as accuracy\n", True),
    # scored 5/6 against the snapshot alone: the fake puts numpy back before the grader looks; the expected
    # values computed before the import and the comparisons bound at import (metrics_module.prepare) stop it
    "patch the comparisons and put them back before the grader looks": (
        "import numpy\nREAL = numpy.isclose, numpy.array_equal\n"
        "def fake(*a, **k):\n    numpy.isclose, numpy.array_equal = REAL\n    return True\n"
        "def patch():\n    numpy.isclose = numpy.array_equal = fake\n"
        "def confusion_matrix(t, p, k):\n    patch()\n    return numpy.zeros((k, k), dtype=int)\n"
        "def accuracy(t, p):\n    patch()\n    return 0.0\n"
        "def precision(t, p, k):\n    patch()\n    return 0.0\n"
        "recall = f1 = precision\n", False),
    "a thread that patches the oracle between checks": (
        "import threading, time, numpy\nreal = numpy.isclose\ndef flip():\n    while True:\n"
        "        numpy.isclose = lambda *a, **k: True\n        time.sleep(0.001)\n        numpy.isclose = real\n"
        "threading.Thread(target=flip, daemon=True).start()\n", True),
    "an exception whose message raises": (
        "class Boom(Exception):\n    def __str__(self):\n        raise RuntimeError('no message')\n"
        "def accuracy(y_true, y_pred):\n    raise Boom()\n", False),
    "ignore SIGTERM": ("import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n", True),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_scores_zero(name):
    attack, tampering = ATTACKS[name]
    report = grade(STUB + "\n" + attack)
    assert_zero(report, tampering)


def test_early_exit_and_forged_stdout_rows_are_named():
    """an early os._exit leaves every unreported test at 0 with a clear reason; rows forged on stdout are named"""
    report = grade(STUB + "\nimport os\nos._exit(0)\n")
    assert "ended before every test reported" in report.error, report.format()
    report = grade(ATTACKS["forge rows on stdout then os._exit"][0])
    assert "forged result rows on stdout" in report.error, report.format()


def test_catching_base_exception_in_an_endless_loop_is_killed():
    """a graded call that swallows every exception forever: the wall-clock kill (SIGKILL) still ends it"""
    source = STUB + ("\nimport time\ndef confusion_matrix(t, p, k):\n    while True:\n        try:\n"
                     "            time.sleep(0.01)\n        except BaseException:\n            pass\n")
    report = grade(source, time_limit_s=6)
    assert_zero(report, tampering=False)
    assert "time limit of 6 s exceeded" in report.error


def test_ignoring_sigterm_inside_a_loop_at_import_is_killed():
    source = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.01)\n"
    report = grade(source, time_limit_s=6)
    assert_zero(report, tampering=False)
    assert "time limit" in report.error


def test_hidden_tests_count_and_forging_hidden_rows_fails():
    report = grade(STUB + "\n" + ATTACKS["forge rows on every other fd"][0], hidden=True)
    assert report.score == 0 and len(report.results) == len(EX.tests) + len(EX.hidden_tests)
    assert report.error.startswith("tampering detected")


def test_honest_code_that_prints_tracebacks_and_warns_still_scores_full_marks():
    """the defences leave normal code alone: tracebacks, warnings, logging, dataclasses, namedtuples"""
    extra = ("\nimport logging, traceback, warnings, collections, dataclasses\n"
             "Pair = collections.namedtuple('Pair', 'a b')\n@dataclasses.dataclass\nclass Box:\n    x: int = 0\n"
             "_accuracy = accuracy\ndef accuracy(y_true, y_pred):\n"
             "    traceback.format_stack()\n    warnings.warn('just saying')\n"
             "    try:\n        raise ValueError('handled')\n    except ValueError:\n"
             "        logging.getLogger('x').exception('handled')\n        traceback.format_exc()\n"
             "    return _accuracy(y_true, y_pred)\n")
    report = grade(EX.reference_source() + extra)
    assert report.score == 1.0 and report.error is None, report.format()


def test_protected_modules_are_not_loaded_when_the_submission_runs():
    """the runner drops the answers, the tests and the grader from sys.modules before importing the submission"""
    probe = STUB + ("\nimport sys\ndef confusion_matrix(t, p, k):\n"
                    "    names = [n for n in sys.modules if n.startswith(('labkit.metrics', 'labkit.solutions', "
                    "'labkit.exercises', 'labkit.hidden_tests', 'labkit.grading'))]\n"
                    "    raise AssertionError(f'loaded: {names}')\n")
    report = grade(probe)
    assert report.results[0].message == "loaded: []", report.format()


@pytest.mark.parametrize("exercise", grading.all_exercises(), ids=lambda e: e.name)
def test_tests_never_import_a_protected_module_lazily(exercise):
    """a test importing the worked implementation inside its body would put it back in reach of the submission"""
    modules = [exercise.module] + ([exercise.hidden_module] if exercise.hidden_tests else [])
    for name in modules:
        tree = ast.parse(inspect.getsource(__import__(name, fromlist=["_"])))
        for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for node in ast.walk(fn):
                imported = ([a.name for a in node.names] if isinstance(node, ast.Import)
                            else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                bad = [m for m in imported for p in exercise.protected_modules if m == p or m.startswith(p + ".")]
                assert not bad, f"{name}.{fn.name} imports {bad} in its body: import it at module level"
