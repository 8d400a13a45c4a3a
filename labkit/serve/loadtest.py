"""`labkit loadtest URL`: open- or closed-loop load against a server, its summary printed, records saved.

The command line beside `labkit serve` (labkit.serve.cli); the load itself is labkit.serve.loadgen.
Taught in 09_async_serving.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from labkit.serve.loadgen import CLIENTS, run_closed_loop, run_open_loop
from labkit.serve.records import jsonable
from labkit.serve.throttle import AdaptiveThrottle
from labkit.serve.workloads import read_bodies, sample_bodies


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `labkit loadtest URL`."""
    parser.add_argument("url", help="server URL; a bare http://host:port gets /predict appended")
    load = parser.add_mutually_exclusive_group(required=True)
    load.add_argument("--rate", type=float, help="open loop: Poisson arrivals at this many req/s")
    load.add_argument("--users", type=int, help="closed loop: this many concurrent users")
    parser.add_argument("--count", type=int, help="number of requests")
    parser.add_argument("--duration", type=float, help="seconds of load (with --count: whichever ends first)")
    parser.add_argument("--timeout", type=float, default=5.0, help="per-request timeout in seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--connections", type=int, default=256, help="open loop: client connection pool size")
    parser.add_argument("--client", choices=CLIENTS, default="fast", help="HTTP client: labkit's lean one or aiohttp")
    parser.add_argument("--throttle", type=float, metavar="K", help="open loop: client-side adaptive throttling "
                        "(refuse locally once requests exceed K x accepts; the SRE book uses K=2)")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--body-file", type=Path, help="a JSON body, or JSON Lines with one body per line")
    src.add_argument("--model", choices=("text", "image"), default="text", help="build sample bodies")
    parser.add_argument("--items", type=int, default=1, help="inputs per request for --model bodies")
    parser.add_argument("--slo-ms", type=float, help="latency SLO for goodput")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--csv", type=Path, help="write one row per request to this CSV file")
    parser.add_argument("--out-json", type=Path, help="write config, summary and records to this JSON file")


def run(args: argparse.Namespace) -> int:
    """Carry out `labkit loadtest`: run the load, print the summary, write the files asked for."""
    from urllib.parse import urlsplit

    url = args.url if urlsplit(args.url).path not in ("", "/") else args.url.rstrip("/") + "/predict"
    bodies = read_bodies(args.body_file) if args.body_file else sample_bodies(args.model, items=args.items,
                                                                              seed=args.seed)
    common = dict(count=args.count, duration_s=args.duration, timeout_s=args.timeout, client=args.client)
    if args.rate is not None:
        throttle = AdaptiveThrottle(k=args.throttle, seed=args.seed) if args.throttle else None
        result = run_open_loop(url, bodies, args.rate, seed=args.seed, connections=args.connections,
                               throttle=throttle, **common)
    else:
        result = run_closed_loop(url, bodies, args.users, **common)
    summary = result.summary(args.slo_ms)
    if args.json:
        print(json.dumps(jsonable(summary)))
    else:
        for key, value in summary.items():
            print(f"{key:>16}: {value:.2f}" if isinstance(value, float) else f"{key:>16}: {value}")
    if args.csv:
        result.to_csv(args.csv)
    if args.out_json:
        result.to_json(args.out_json, args.slo_ms)
    return 0
