"""The `labkit` command: data, course, strip, env (later: serve, loadtest, bench, grade, quiz)."""
from __future__ import annotations

import argparse
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
    for path in paths:
        out, seconds = notebooks.execute(path, fast=not args.full)
        print(f"{path.name}: {seconds:.1f} s -> {out}")
    return 0


def cmd_strip(args: argparse.Namespace) -> int:
    from labkit import notebooks

    paths = [p for arg in args.paths for p in (sorted(Path(arg).rglob("*.ipynb")) if Path(arg).is_dir() else [Path(arg)])]
    for path in paths:
        if "executed" not in path.parts and notebooks.strip_outputs(path):
            print(f"stripped {path}")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    from labkit.accelerate import environment_report

    for key, value in environment_report().items():
        print(f"{key:>24}: {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labkit", description="Fast under load: course tools")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("data", help="verify (or --regenerate) the shipped datasets")
    p.add_argument("--regenerate", action="store_true", help="rebuild data/ from its seeds, then verify")
    p.set_defaults(func=cmd_data)
    p = sub.add_parser("course", help="execute the course notebooks into notebooks/executed/")
    p.add_argument("--full", action="store_true", help="full mode (default: fast mode, as in CI)")
    p.add_argument("--only", nargs="*", help="notebook number prefixes, e.g. --only 01 04")
    p.set_defaults(func=cmd_course)
    p = sub.add_parser("strip", help="remove notebook outputs before committing")
    p.add_argument("paths", nargs="+")
    p.set_defaults(func=cmd_strip)
    p = sub.add_parser("env", help="print versions, cores, threads and GPUs")
    p.set_defaults(func=cmd_env)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"labkit {args.command}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
