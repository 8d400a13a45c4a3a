"""The `labkit` command: lab, data, course, strip, grade, handout, quiz, env, bench, serve, loadtest."""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path


def cmd_data(args: argparse.Namespace) -> int:
    from labkit import data

    if args.regenerate:
        for name, digest in data.regenerate().items():
            print(f"wrote {name}  sha256 {digest[:16]}…")
    data.verify_checksums()
    print(f"data in {data.data_dir()} matches CHECKSUMS.sha256")
    return 0


def cmd_course(args: argparse.Namespace) -> int:
    from labkit import notebooks

    paths = [p for p in notebooks.course_notebooks() if not args.only or p.name.startswith(tuple(args.only))]
    runs = []
    for path in paths:
        try:
            out, seconds = notebooks.execute(path, fast=not args.full)
        except Exception as err:  # papermill raises on a failing cell; the executed copy still shows where
            if not args.report:
                raise
            out, seconds = notebooks.EXECUTED_DIR / path.name, float("nan")
            print(f"{path.name}: FAILED ({type(err).__name__}) -> {out}")
        else:
            print(f"{path.name}: {seconds:.1f} s -> {out}")
        runs.append((out, seconds))
    if args.report:
        from labkit.report import build_report

        index = build_report([r for r in runs if r[0].exists()], notebooks.EXECUTED_DIR / "report",
                             "full" if args.full else "fast")
        print(f"report: {index}")
    return 0


def cmd_strip(args: argparse.Namespace) -> int:
    from labkit import notebooks

    paths = [p for arg in args.paths for p in (sorted(Path(arg).rglob("*.ipynb")) if Path(arg).is_dir() else [Path(arg)])]
    for path in paths:
        if "executed" not in path.parts and notebooks.strip_outputs(path):
            print(f"stripped {path}")
    return 0


def cmd_grade(args: argparse.Namespace) -> int:
    from labkit import grading

    if args.list:
        for ex in grading.all_exercises():
            print(f"{ex.name:<28} {ex.kind:<8} {ex.title}")
        return 0
    if not args.path:
        raise ValueError("give a notebook to grade (or --list)")
    report = grading.grade_notebook(Path(args.path), exercise=args.exercise, hidden=args.hidden)
    print(report.to_json() if args.json else report.format())
    return 0 if report.score == 1.0 else 2


def cmd_handout(args: argparse.Namespace) -> int:
    from labkit.grading import get_exercise
    from labkit.grading.handout import write_handout

    out = write_handout(get_exercise(args.name), Path(args.out))
    print(f"handout written to {out} (no solution inside)")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    from labkit.accelerate import environment_report

    for key, value in environment_report().items():
        print(f"{key:>24}: {value}")
    return 0


def _delegate(parser: argparse.ArgumentParser, module_name: str) -> None:
    """A subcommand whose options and behaviour live in `module_name` (its add_arguments and run)."""
    module = importlib.import_module(module_name)
    module.add_arguments(parser)
    parser.set_defaults(func=module.run)


def build_parser() -> argparse.ArgumentParser:
    from labkit import quiz

    parser = argparse.ArgumentParser(prog="labkit", description="Fast under load: course tools")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("data", help="verify (or --regenerate) the shipped datasets")
    p.add_argument("--regenerate", action="store_true", help="rebuild data/ from its seeds, then verify")
    p.set_defaults(func=cmd_data)
    p = sub.add_parser("course", help="execute the course notebooks into notebooks/executed/")
    p.add_argument("--full", action="store_true", help="full mode (default: fast mode, as in CI)")
    p.add_argument("--only", nargs="*", help="notebook number prefixes, e.g. --only 01 04")
    p.add_argument("--report", action="store_true",
                   help="also write notebooks/executed/report/course_report.html (every notebook as HTML + summary)")
    p.set_defaults(func=cmd_course)
    p = sub.add_parser("strip", help="remove notebook outputs before committing")
    p.add_argument("paths", nargs="+")
    p.set_defaults(func=cmd_strip)
    p = sub.add_parser("grade", help="grade an exercise notebook (or --list the exercises)")
    p.add_argument("path", nargs="?", help="the student notebook")
    p.add_argument("--exercise", help="exercise name, if the notebook does not say")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.add_argument("--list", action="store_true", help="list the exercises, one per line")
    p.add_argument("--hidden", action="store_true", help="also run the hidden tests (interviewers; never in a handout)")
    p.set_defaults(func=cmd_grade)
    p = sub.add_parser("handout", help="write a self-contained exercise folder without the solution")
    p.add_argument("name")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_handout)
    p = sub.add_parser("quiz", help="interview questions with their answers and evidence links")
    quiz.add_arguments(p)
    p.set_defaults(func=quiz.run)
    p = sub.add_parser("env", help="print versions, cores, threads and GPUs")
    p.set_defaults(func=cmd_env)
    p = sub.add_parser("bench", help="benchmarks: `bench models` (default), `bench serving`, `bench capstone` or "
                                     "`bench overload`")
    suites = p.add_subparsers(dest="suite", required=True)
    _delegate(suites.add_parser("models", help="latency and throughput of the course models over batch sizes"),
              "labkit.bench")
    _delegate(suites.add_parser("serving", help="model bound, HTTP bound, naive vs batched server goodput"),
              "labkit.serve.benchmark")
    _delegate(suites.add_parser("capstone", help="naive server to the course's best, one lever at a time (16 §5)"),
              "labkit.deploy.capstone")
    _delegate(suites.add_parser("overload", help="capacity, then open loop at 0.8x and 3x it: goodput, admitted and "
                                                  "rejection p99, every request accounted for (09 §7b)"),
              "labkit.serve.overload")
    _delegate(sub.add_parser("lab", help="open the course in JupyterLab (what `make lab` runs)"), "labkit.lab")
    _delegate(sub.add_parser("serve", help="run the model server (see 09_async_serving)"), "labkit.serve.cli")
    _delegate(sub.add_parser("loadtest", help="open- or closed-loop load against a server"), "labkit.serve.loadtest")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"] and (len(argv) == 1 or argv[1].startswith("-")):
        argv.insert(1, "models")  # `labkit bench` alone runs the standard model comparison
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, RuntimeError, FileNotFoundError, KeyError) as err:
        print(f"labkit {args.command}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
