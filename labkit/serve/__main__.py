"""`python -m labkit.serve [flags]`: the same as `labkit serve`."""
import argparse
import sys

from labkit.serve.cli import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.serve", description="labkit model server")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
