"""Command-line DDP run, one process per rank: `torchrun --nproc-per-node 2 -m labkit.distributed --steps 10`.

torchrun sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT for every rank and, if one rank fails, stops the
others and exits non-zero. Rank 0 prints one JSON line: are the ranks bit-identical, how far from one process
trained on the whole global batch. Taught in 08_distributed_training.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch.distributed as dist

from labkit.distributed.ddp import DDPConfig, digits_flat, gathered, sync_report, train_on_rank, train_single
from labkit.distributed.launch import pick_backend


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="torchrun --nproc-per-node N -m labkit.distributed")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--global-batch", type=int, default=64)
    parser.add_argument("--backend", choices=("gloo", "nccl"), default=None, help="default: nccl if GPUs, else gloo")
    parser.add_argument("--fail-rank", type=int, default=-1, help="this rank raises at once (cleanup demo)")
    parser.add_argument("--tag", default="", help="ignored: lets a caller find its own processes")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    backend = args.backend or pick_backend(world_size)
    dist.init_process_group(backend)  # env:// rendezvous: the variables torchrun set
    try:
        if rank == args.fail_rank:
            raise RuntimeError(f"rank {rank} fails on purpose (--fail-rank {rank})")
        X, y = digits_flat(1792)
        config = DDPConfig(steps=args.steps, global_batch=args.global_batch)
        params = train_on_rank(rank, world_size, X, y, config)
        copies = gathered(rank, world_size, params.to("cuda", rank) if backend == "nccl" else params)
        if rank == 0:
            report = sync_report([c.cpu() for c in copies], train_single(X, y, config))
            print(json.dumps({"backend": backend, "world_size": world_size, "steps": args.steps, **report}), flush=True)
        # Leave together: a rank that tears its group down while rank 0 still computes the reference was
        # aborted by gloo at exit now and then (SIGABRT, exit code 1 from torchrun; 1 run in 4 here).
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    code = main()
    # The group is destroyed and the report printed; leave without running C++ static destructors. At normal
    # interpreter exit a non-zero rank sometimes died in them ("terminate called without an active exception",
    # SIGABRT: 1 run in 13-26 here) after rank 0, which hosts the rendezvous store, had gone.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
