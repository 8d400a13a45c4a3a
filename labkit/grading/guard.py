"""In-process defences of the grading runner: an audit hook (PEP 578) and a snapshot of what the tests trust.

In-process Python is not a security boundary: these raise the cost of cheating and make it visible, they do not
contain a determined attacker. Run untrusted code in a container (no network, read-only course files) for real
isolation. What holds here:
- the hook refuses, and reports as tampering, imports of the solutions, tests, grader and the exercise's
  protected modules; opening or listing their files or /proc; starting processes; and, while the submission's
  own code is on the stack, frame and garbage-collector walks, ctypes, new code objects, and patching classes or
  functions it did not define. It also signs the result rows, so the key never leaves its closure;
- a snapshot of every loaded module's functions and classes, compared after the import and after each test,
  catches monkeypatching that no audit event reports (setting a module attribute, e.g. `sklearn.metrics.f1_score`).
"""
from __future__ import annotations

import json
import linecache
import os
import signal
import sys
import threading
import types
import warnings
from typing import Callable

from labkit.grading.channel import sign_row

ROW_EVENT = "labkit.grading.row"
ROW_KINDS = ("test", "tamper", "import_error", "done")
SUBMISSION_MODULE = "submission"
PROCESS_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
                  "pty.spawn", "os.kill", "os.killpg", "sys.addaudithook")
WALK_EVENTS = ("gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys._current_frames",
               "sys._current_exceptions", "sys.settrace", "sys.setprofile")
# refused only when the submission itself calls them (importing a module calls marshal.loads, for one)
DIRECT_EVENTS = ("code.__new__", "function.__new__", "marshal.loads", "marshal.load")
FRAME_ATTRS = ("tb_frame", "gi_frame", "cr_frame", "ag_frame")
PATH_EVENTS = ("open", "os.listdir", "os.scandir", "glob.glob", "shutil.copyfile", "shutil.copytree")
# stdlib modules that legitimately read frames for their caller (warnings, logging, tracebacks, namedtuple)
_STDLIB_DIR = os.path.dirname(os.__file__)
_FRAME_HELPERS = tuple(os.path.join(_STDLIB_DIR, name) for name in ("traceback.py", "inspect.py"))
_TRACEBACK = os.path.join(_STDLIB_DIR, "traceback.py")
_CTYPES_DIR = os.path.join(_STDLIB_DIR, "ctypes") + os.sep
_SOURCE_READERS = tuple(os.path.join(_STDLIB_DIR, name) for name in ("linecache.py", "tokenize.py"))


def install(key: bytes, channel_fd: int, submission_path: str, protected_modules: tuple[str, ...],
            answers: tuple[str, ...], protected_paths: tuple[str, ...], sender: Callable,
            main_frame: types.FrameType) -> None:
    """Install the audit hook: it signs rows sent by `sender` from `main_frame` and refuses the rest (see module).

    `answers` (reference solutions, the worked implementation) may never be imported again; the other
    protected modules (tests, grader) only not while the submission's code is on the stack.
    """
    owned_files = {submission_path}
    busy: set[int] = set()
    lock = threading.Lock()
    seq = [0]
    sender_code = sender.__code__
    paths = tuple(os.path.realpath(p) for p in protected_paths)

    def write(row: dict) -> None:
        with lock:
            os.write(channel_fd, sign_row(key, seq[0], row))
            seq[0] += 1

    def owned(frame) -> bool:
        return frame is not None and frame.f_code.co_filename in owned_files

    def owned_on_stack(frame) -> bool:
        while frame is not None:
            if frame.f_code.co_filename in owned_files:
                return True
            frame = frame.f_back
        return False

    def check_row(caller, args) -> str | None:
        if caller.f_code is not sender_code or caller.f_back is not main_frame:
            return "tried to sign a result row"
        row = json.loads(args[0])
        if row.get("kind") not in ROW_KINDS:
            return "tried to sign a malformed result row"
        write(row)
        return None

    def check(event: str, args: tuple, caller) -> str | None:
        if event == ROW_EVENT:
            return check_row(caller, args)
        if event == "import":
            name = args[0] if isinstance(args[0], str) else ""
            if _under(name, answers) or (_under(name, protected_modules) and owned_on_stack(caller)):
                return f"imported {name}, which a submission may not use"
            return None  # a test's pickle may re-import the test module; the answers stay out of reach
        if event in PATH_EVENTS:
            return _check_path(args, paths, caller, owned, owned_on_stack, owned_files)
        if event in PROCESS_EVENTS or event.startswith("os.exec") or event.startswith("os.spawn"):
            return f"{event} (a submission may not start processes, signal them or add audit hooks)"
        if event == "compile":
            if owned(caller) and len(args) > 1 and isinstance(args[1], str):
                owned_files.add(args[1])  # code the submission compiles itself counts as its own
            return None
        if event == "sys._getframe":  # directly, or through inspect.currentframe / traceback.walk_stack
            if caller.f_code.co_filename == _TRACEBACK and (
                    caller.f_code.co_name != "walk_stack" or caller.f_back.f_code.co_filename == _TRACEBACK):
                return None  # traceback turning the stack into text; only walk_stack hands frames out
            if owned(_outside(caller, lambda f: f in _FRAME_HELPERS)):
                return "sys._getframe (walking the grader's frames)"
            return None
        if event == "object.__getattr__":
            return _check_frame_read(args, caller, owned_on_stack)
        if event in ("object.__setattr__", "object.__delattr__"):
            # the submission's own statement; a library it calls may set its own classes (lazy imports do)
            return _check_patch(args, owned_files) if owned(caller) else None
        if event in DIRECT_EVENTS:
            return f"{event} (making code the grader cannot attribute)" if owned(caller) else None
        if event.startswith("ctypes."):
            # directly, or through ctypes' own Python helpers (ctypes.cast, ...)
            return f"{event} (raw memory access)" if owned(_outside(caller, _in_ctypes)) else None
        if event in WALK_EVENTS:
            return f"{event} (introspection the grader does not allow)" if owned_on_stack(caller) else None
        return None

    def hook(event: str, args: tuple) -> None:
        me = threading.get_ident()
        if me in busy or not (event in _WATCHED or event.startswith(("ctypes.", "os.exec", "os.spawn"))):
            return
        busy.add(me)
        try:
            what = check(event, args, sys._getframe(1))
            if what:
                write({"kind": "tamper", "what": what})
        finally:
            busy.discard(me)
        if what:
            raise RuntimeError(f"refused by the grader: {what}")

    sys.addaudithook(hook)


_WATCHED = frozenset((ROW_EVENT, "import", "compile", "sys._getframe", "object.__getattr__", "object.__setattr__",
                      "object.__delattr__", *PATH_EVENTS, *PROCESS_EVENTS, *WALK_EVENTS, *DIRECT_EVENTS))


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _outside(frame, helper: Callable[[str], bool]):
    """The first frame, from `frame` outwards, whose file is not a helper's."""
    while frame is not None and helper(frame.f_code.co_filename):
        frame = frame.f_back
    return frame


def _in_ctypes(filename: str) -> bool:
    return filename.startswith(_CTYPES_DIR)


def _check_path(args: tuple, paths: tuple[str, ...], caller, owned: Callable, owned_on_stack: Callable,
                owned_files: set) -> str | None:
    """Refuse protected files (and /proc to the submission); a .py file the submission writes becomes its own."""
    raw = args[0] if args else None
    if isinstance(raw, bytes):
        raw = os.fsdecode(raw)
    if not isinstance(raw, (str, os.PathLike)):
        return None  # a file descriptor
    path = os.path.realpath(os.fspath(raw))
    if any(path == p or path.startswith(p + os.sep) for p in paths):
        reader = caller.f_code.co_filename
        if (reader in _SOURCE_READERS or reader.startswith("<frozen importlib")) and not owned_on_stack(caller):
            return None  # a traceback from a test shows its source line; a test's pickle re-imports its module
        return f"read {path}, which a submission may not open"
    if (path == "/proc" or path.startswith("/proc/")) and owned_on_stack(caller):
        return f"read {path} (the grader's memory and file descriptors)"
    mode = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
    if owned(caller) and any(m in mode for m in "wax+") and path.endswith(".py"):
        owned_files.add(path)
    return None


def _check_frame_read(args: tuple, caller, owned_on_stack: Callable) -> str | None:
    """Frames lead to the grader's state: refuse them to the submission (tracebacks it prints are fine)."""
    if len(args) < 2 or args[1] not in FRAME_ATTRS or not owned_on_stack(caller):
        return None
    helper = caller.f_code.co_filename in _FRAME_HELPERS
    if helper and caller.f_back is not None and caller.f_back.f_code.co_filename in _FRAME_HELPERS:
        return None  # traceback formatting its own walk (traceback.print_exc, logging.exception)
    return f"read {args[1]} (walking the grader's frames)"


def _check_patch(args: tuple, owned_files: set) -> str | None:
    """Patching a class or a function's code the submission did not define is tampering."""
    target, name = args[0], args[1] if len(args) > 1 else "?"
    if isinstance(target, type):
        if target.__module__ != SUBMISSION_MODULE:
            return f"set {target.__module__}.{target.__qualname__}.{name}"
        return None
    if isinstance(target, types.FunctionType):
        if name in ("__code__", "__defaults__", "__kwdefaults__") and target.__code__.co_filename not in owned_files:
            return f"set {name} of {target.__module__}.{target.__qualname__}"
        return None
    if name == "__class__" and type(target).__module__ != SUBMISSION_MODULE:
        return f"set __class__ of a {type(target).__qualname__}"
    return None


def evict(prefixes: tuple[str, ...], keep: tuple[str, ...] = ()) -> list[types.ModuleType]:
    """Drop modules under `prefixes` (not `keep`) from sys.modules and their parent package: a new import is seen."""
    gone = [name for name in list(sys.modules) if _under(name, prefixes) and name not in keep]
    modules = [sys.modules.pop(name) for name in gone]
    for name in gone:
        parent, _, child = name.rpartition(".")
        if parent in sys.modules and getattr(sys.modules[parent], child, None) is not None:
            try:
                delattr(sys.modules[parent], child)
            except AttributeError:
                pass
    return modules


def blank_sources(modules: list[types.ModuleType], paths: tuple[str, ...]) -> None:
    """Cache protected files' source as empty in linecache: a stack printed later shows no line of them.

    `traceback.format_stack()` (torch calls it while seeding) reads the source of every frame on the stack,
    the tests' included; an empty entry with the file's real size and mtime survives linecache.checkcache.
    """
    for module in modules:
        filename = getattr(module, "__file__", None)
        if not filename:
            continue
        path = os.path.realpath(filename)
        if any(path == p or path.startswith(p + os.sep) for p in paths):
            stat = os.stat(filename)
            linecache.cache[filename] = (stat.st_size, stat.st_mtime, [], filename)


_TRACKED = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.ModuleType, type)


def snapshot(extra: list[types.ModuleType] = ()) -> list[tuple[dict, dict]]:
    """Each loaded module's namespace with its functions, classes and submodules, plus each function's code."""
    shots = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some lazy module attributes warn when looked at
        for module in [*sys.modules.values(), *extra]:
            space = getattr(module, "__dict__", None)
            if isinstance(space, dict):
                shots.append((space, {k: _identity(v) for k, v in list(space.items()) if isinstance(v, _TRACKED)}))
    return shots


def _identity(value) -> tuple:
    if isinstance(value, types.FunctionType):
        return value, value.__code__, value.__defaults__
    return (value,)


def changed(shots: list[tuple[dict, dict]], limit: int = 3) -> list[str]:
    """Names in the snapshot now bound to something else (or with new code): what was monkeypatched."""
    found = []
    for space, saved in shots:
        for name, ident in saved.items():
            now = space.get(name, _MISSING)
            if now is not ident[0] and _own_wrapper(now, ident[0]):
                continue
            if now is not ident[0] or (len(ident) > 1 and (now.__code__ is not ident[1]
                                                           or now.__defaults__ is not ident[2])):
                found.append(f"{space.get('__name__', '?')}.{name}")
                if len(found) >= limit:
                    return found
    return found


_MISSING = object()


def _own_wrapper(now, before) -> bool:
    """A library wrapping its own function lazily (torch wraps torch.manual_seed on first use): not tampering."""
    root = sys.modules.get((getattr(before, "__module__", None) or "").partition(".")[0])
    code = getattr(now, "__code__", None)
    if root is None or code is None or not getattr(root, "__file__", None):
        return False
    inner, seen = now, 0
    while inner is not before and hasattr(inner, "__wrapped__") and seen < 10:
        inner, seen = inner.__wrapped__, seen + 1
    return inner is before and code.co_filename.startswith(os.path.dirname(root.__file__) + os.sep)


def signal_handlers() -> dict:
    """The handler of every signal that has one we can read."""
    handlers = {}
    for sig in signal.valid_signals():
        try:
            handlers[sig] = signal.getsignal(sig)
        except (ValueError, OSError):
            pass
    return handlers


def threads_running(owned_file: str, known: set[int]) -> list[str]:
    """Names of threads started since `known` whose stack runs the submission's code (libraries' are fine)."""
    frames = sys._current_frames()
    found = []
    for thread in threading.enumerate():
        frame = frames.get(thread.ident)
        if thread.ident in known or frame is None:
            continue
        while frame is not None and frame.f_code.co_filename != owned_file:
            frame = frame.f_back
        if frame is not None:
            found.append(thread.name)
    return found


def foreign_graded(module: types.ModuleType, names: tuple[str, ...], owned_file: str) -> list[str]:
    """Graded functions and classes the submission did not write itself (imported or aliased from elsewhere)."""
    import inspect

    foreign = []
    for name in names:
        obj = getattr(module, name, None)
        if obj is None:
            continue
        if isinstance(obj, type):
            if obj.__module__ != SUBMISSION_MODULE:
                foreign.append(f"{name} (from {obj.__module__})")
            continue
        fn = inspect.unwrap(obj) if callable(obj) else obj
        code = getattr(fn, "__code__", None)
        if code is None or code.co_filename != owned_file:
            foreign.append(f"{name} (from {getattr(fn, '__module__', None) or type(fn).__name__})")
    return foreign
