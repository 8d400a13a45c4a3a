"""Open the course in JupyterLab: the one command line that `make lab` and tests/test_lab.py share."""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from labkit.notebooks import NOTEBOOK_DIR


def running_as_root() -> bool:
    """True when the effective user is root (containers, fresh cloud machines)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def lab_argv(extra: Sequence[str] = (), notebook_dir: Path = NOTEBOOK_DIR) -> list[str]:
    """`jupyter lab` on the course notebooks with this interpreter; --allow-root only as root."""
    # As root, JupyterLab refuses to start without --allow-root; as anyone else the flag is not needed.
    root_flag = ["--allow-root"] if running_as_root() else []
    return [sys.executable, "-m", "jupyterlab", str(notebook_dir), *root_flag, *extra]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `labkit lab`: anything after `--` goes to `jupyter lab` unchanged."""
    parser.add_argument("jupyter_args", nargs=argparse.REMAINDER,
                        help="`jupyter lab` options after `--`, e.g. labkit lab -- --no-browser --ServerApp.port=8899")


def run(args: argparse.Namespace) -> int:
    """Replace this process with JupyterLab, so Ctrl-C and signals reach it directly."""
    extra = args.jupyter_args[1:] if args.jupyter_args[:1] == ["--"] else args.jupyter_args
    argv = lab_argv(extra)
    print("starting:", " ".join(argv), flush=True)
    os.execv(argv[0], argv)
    return 0  # not reached: execv does not return
