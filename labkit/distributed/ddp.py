"""Data parallel training with DistributedDataParallel, and the proof that it is synchronous SGD.

Every rank holds a full copy of the model and trains on its own shard of each global batch; DDP averages the
gradients with an all-reduce during backward, so every rank takes the same step. Two checks prove it: after N
steps the ranks hold bit-identical parameters, and they equal one process trained on the whole global batch.
Functions named `*_on_rank` run inside a rank (see launch.py). Taught in 08_distributed_training.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from labkit.models import MLP


@dataclass(frozen=True)
class DDPConfig:
    steps: int = 10             # optimizer steps; the same global batches for every world size
    global_batch: int = 64      # samples per step summed over ranks; each rank sees global_batch / world_size
    lr: float = 0.1             # plain SGD: the same update rule on every rank
    hidden: tuple[int, ...] = (64,)
    seed: int = 0               # model init and the sampler's shuffle
    bucket_cap_mb: float = 25.0  # DDP's gradient bucket size (its default)
    batch_norm: bool = False    # BatchNorm normalizes with each rank's own local batch (SyncBatchNorm: GPU only)


def digits_flat(n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits as (N, 64) floats in [0, 1] and labels; the first n rows if given."""
    from sklearn.datasets import load_digits  # lazy: scikit-learn takes seconds to import

    digits = load_digits()
    X = torch.from_numpy((digits.data / 16.0).astype(np.float32))  # (N, 64)
    y = torch.from_numpy(digits.target.astype(np.int64))
    return (X, y) if n is None else (X[:n], y[:n])


def make_model(config: DDPConfig, seed: int | None = None) -> nn.Module:
    """The course MLP on 64 features, initialised from `seed` (config.seed by default)."""
    torch.manual_seed(config.seed if seed is None else seed)
    return MLP(64, config.hidden, 10, batch_norm=config.batch_norm)


def flat_params(model: nn.Module) -> torch.Tensor:
    """Every parameter in one detached 1-D tensor (a DDP wrapper's inner module's)."""
    module = model.module if isinstance(model, DDP) else model
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def sampler_shards(n: int, world_size: int, seed: int = 0, epoch: int = 0, drop_last: bool = False) -> list[list[int]]:
    """The indices DistributedSampler gives each rank of an n-sample dataset in one epoch."""
    shards = []
    for rank in range(world_size):
        sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                     drop_last=drop_last)
        sampler.set_epoch(epoch)
        shards.append(list(sampler))
    return shards


def shard_report(shards: list[list[int]], n: int) -> dict:
    """Are the shards disjoint, is their union the dataset, how many samples are repeated or left out."""
    seen = [i for shard in shards for i in shard]
    union = set(seen)
    return {"sizes": [len(s) for s in shards], "disjoint": len(union) == len(seen),
            "complete": union == set(range(n)), "repeated": len(seen) - len(union), "missing": n - len(union)}


def loader_for_rank(X: torch.Tensor, y: torch.Tensor, config: DDPConfig, rank: int, world_size: int) -> DataLoader:
    """This rank's shard of every global batch: DistributedSampler + a local batch of global_batch / world_size."""
    if config.global_batch % world_size:
        raise ValueError(f"global_batch {config.global_batch} is not divisible by world_size {world_size}")
    sampler = DistributedSampler(TensorDataset(X, y), num_replicas=world_size, rank=rank, shuffle=True,
                                 seed=config.seed, drop_last=True)
    return DataLoader(TensorDataset(X, y), batch_size=config.global_batch // world_size, sampler=sampler)


def steps_of(loader: DataLoader, steps: int):
    """(epoch, x, y) for `steps` batches, calling set_epoch so each epoch reshuffles the same way on every rank."""
    done, epoch = 0, 0
    while done < steps:
        loader.sampler.set_epoch(epoch)
        for xb, yb in loader:
            if done == steps:
                return
            yield epoch, xb, yb
            done += 1
        epoch += 1


def train_on_rank(rank: int, world_size: int, X: torch.Tensor, y: torch.Tensor, config: DDPConfig) -> torch.Tensor:
    """Train with DDP on this rank's shards; its final parameters.

    Each rank initialises its model from a different seed on purpose: DDP's constructor broadcasts rank 0's
    parameters, and the equality checks would fail without that broadcast.
    """
    device = rank_device(rank)
    model = DDP(make_model(config, seed=config.seed + rank).to(device), bucket_cap_mb=config.bucket_cap_mb,
                device_ids=[rank] if device.type == "cuda" else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    for _, xb, yb in steps_of(loader_for_rank(X, y, config, rank, world_size), config.steps):
        optimizer.zero_grad()
        # mean over the local shard; DDP averages the gradients over ranks during backward
        nn.functional.cross_entropy(model(xb.to(device)), yb.to(device)).backward()
        optimizer.step()
    return flat_params(model).cpu()


def rank_device(rank: int) -> torch.device:
    """Where this rank computes: its own GPU under nccl, the CPU under gloo."""
    return torch.device("cuda", rank) if dist.get_backend() == "nccl" else torch.device("cpu")


def train_single(X: torch.Tensor, y: torch.Tensor, config: DDPConfig) -> torch.Tensor:
    """The reference: one process, the whole global batch per step, same seed, same sample order."""
    model = make_model(config)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    for _, xb, yb in steps_of(loader_for_rank(X, y, config, rank=0, world_size=1), config.steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        optimizer.step()
    return flat_params(model)


def sync_report(per_rank: list[torch.Tensor], single: torch.Tensor) -> dict:
    """Bit-identical ranks? Largest difference from the single-process reference?"""
    first = per_rank[0]
    return {"bit_identical": all(torch.equal(first, p) for p in per_rank[1:]),
            "max_abs_diff_vs_single": max(float((p - single).abs().max()) for p in per_rank),
            "params": first.numel()}


def gathered(rank: int, world_size: int, tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's copy of `tensor` (all_gather): how a rank checks the others without a shared file."""
    out = [torch.empty_like(tensor) for _ in range(world_size)]
    dist.all_gather(out, tensor)
    return out
