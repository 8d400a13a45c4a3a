"""Parameter sharding (FSDP2's `fully_shard`) on CPU with gloo: each rank stores 1/n of the parameters.

Between steps each rank holds only its shard; a layer's full weights are all-gathered just before it runs
and freed after, and gradients are reduce-scattered so each rank updates its own shard. Functions named
`*_on_rank` run inside a rank. Taught in 08_distributed_training.
"""
from __future__ import annotations

import torch
from torch import nn


def _linears(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def fsdp_on_rank(rank: int, world_size: int, model_fn, X: torch.Tensor, y: torch.Tensor, lr: float = 0.1) -> dict:
    """Shard model_fn()'s Linear layers over the ranks, take one SGD step; bytes stored here and the full result."""
    from torch.distributed.fsdp import fully_shard  # lazy: loading FSDP costs seconds

    model = model_fn()
    full_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    for layer in _linears(model):
        fully_shard(layer)  # one all-gather unit per layer: only one layer's full weights live at a time
    fully_shard(model)
    local_bytes = sum(p.to_local().numel() * p.element_size() for p in model.parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    shard = X.chunk(world_size)[rank], y.chunk(world_size)[rank]  # data parallel too: each rank its own rows
    nn.functional.cross_entropy(model(shard[0]), shard[1]).backward()
    optimizer.step()
    params = torch.cat([p.full_tensor().detach().reshape(-1) for p in model.parameters()])  # all-gathers
    return {"rank": rank, "full_param_bytes": full_bytes, "local_param_bytes": local_bytes, "params": params}


def single_step(model_fn, X: torch.Tensor, y: torch.Tensor, lr: float = 0.1) -> torch.Tensor:
    """The reference: one unsharded process, one SGD step on all rows; its flat parameters."""
    model = model_fn()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    nn.functional.cross_entropy(model(X), y).backward()
    optimizer.step()
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])
