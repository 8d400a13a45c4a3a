"""Model parallel: an MLP split into two stages on two ranks, micro-batched like GPipe.

Rank 0 holds the first layers and the inputs, rank 1 the last layers and the labels. Forward: rank 0 sends
each micro-batch's activations to rank 1 (isend, so it can start the next micro-batch at once); backward:
rank 1 sends the gradient of the loss with respect to those activations back. All forwards first, then all
backwards (GPipe); with p stages and m micro-batches each rank idles (p-1)/(m+p-1) of the step in theory: the
pipeline bubble. Functions named `*_on_rank` run inside a rank. Taught in 08_distributed_training.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class PipeConfig:
    width: int = 256        # hidden units of every layer
    depth: int = 7          # hidden Linear+ReLU layers: 4 on rank 0 (the first one narrow), 3 and the head on rank 1
    batch: int = 256        # samples per step, cut into micro-batches
    seed: int = 0


def make_deep_mlp(config: PipeConfig, in_features: int = 64, classes: int = 10) -> nn.Sequential:
    """A plain Sequential MLP (no Flatten, no dropout) so that it can be cut at any layer."""
    torch.manual_seed(config.seed)
    layers: list[nn.Module] = []
    width = in_features
    for _ in range(config.depth):
        layers += [nn.Linear(width, config.width), nn.ReLU()]
        width = config.width
    return nn.Sequential(*layers, nn.Linear(width, classes))


def split_stages(model: nn.Sequential) -> tuple[nn.Sequential, nn.Sequential]:
    """Two stages of about equal work: the first (depth + 1) // 2 (Linear, ReLU) pairs, then the rest and the head."""
    pairs = (len(model) - 1) // 2  # the first pair is narrow (64 inputs), so an odd depth balances the stages
    cut = 2 * ((pairs + 1) // 2)
    return model[:cut], model[cut:]


def bubble_fraction(stages: int, micro_batches: int) -> float:
    """GPipe's idle share of a step when every stage takes the same time and sending is free."""
    return (stages - 1) / (micro_batches + stages - 1)


def reference_step(model: nn.Sequential, X: torch.Tensor, y: torch.Tensor) -> dict:
    """The unsplit model on one process: logits, loss and every parameter's gradient."""
    model.zero_grad()
    logits = model(X)
    loss = nn.functional.cross_entropy(logits, y)
    loss.backward()
    return {"logits": logits.detach(), "loss": loss.item(), "grads": [p.grad.clone() for p in model.parameters()]}


def _first_stage(stage: nn.Module, chunks: list[torch.Tensor]) -> float:
    """Rank 0: forward every micro-batch and send it on; then backward each with the gradient sent back."""
    busy, sends, outputs = 0.0, [], []
    for x in chunks:
        start = time.perf_counter()
        a = stage(x)  # (mb, width)
        busy += time.perf_counter() - start
        sends.append(dist.isend(a.detach(), dst=1))
        outputs.append(a)
    for a in reversed(outputs):
        grad = torch.empty_like(a)
        dist.recv(grad, src=1)
        start = time.perf_counter()
        a.backward(grad)
        busy += time.perf_counter() - start
    for handle in sends:
        handle.wait()
    return busy


def _last_stage(stage: nn.Module, chunks: list[torch.Tensor], labels: list[torch.Tensor], width: int,
                batch: int) -> tuple[float, torch.Tensor, float]:
    """Rank 1: receive each micro-batch's activations, finish forward and loss; backward, sending gradients back."""
    busy, inputs, losses, logits = 0.0, [], [], []
    for x, y in zip(chunks, labels):
        a = torch.empty(len(x), width)
        dist.recv(a, src=0)
        a.requires_grad_()
        start = time.perf_counter()
        out = stage(a)  # (mb, classes)
        # sum / batch: the micro-batch losses add up to the full batch's mean loss, so gradients match
        losses.append(nn.functional.cross_entropy(out, y, reduction="sum") / batch)
        busy += time.perf_counter() - start
        inputs.append(a)
        logits.append(out.detach())
    sends = []
    for a, loss in zip(reversed(inputs), reversed(losses)):
        start = time.perf_counter()
        loss.backward()
        busy += time.perf_counter() - start
        sends.append(dist.isend(a.grad, dst=0))
    for handle in sends:
        handle.wait()
    return busy, torch.cat(logits), float(sum(loss.item() for loss in losses))


def pipeline_on_rank(rank: int, world_size: int, X: torch.Tensor, y: torch.Tensor, config: PipeConfig,
                     micro_batches: int, repeats: int = 3) -> dict:
    """One GPipe training step (forward + backward) of this rank's stage: busy vs wall time, gradients, logits."""
    if world_size != 2:
        raise ValueError("this pipeline has exactly two stages: run it on two ranks")
    stage = split_stages(make_deep_mlp(config))[rank]
    chunks, labels = X[:config.batch].chunk(micro_batches), y[:config.batch].chunk(micro_batches)
    rows = []
    for _ in range(repeats + 1):  # the first step warms up buffers and connections
        stage.zero_grad()
        dist.barrier()
        start = time.perf_counter()
        if rank == 0:
            busy, logits, loss = _first_stage(stage, chunks), None, None
        else:
            busy, logits, loss = _last_stage(stage, chunks, labels, config.width, config.batch)
        rows.append((time.perf_counter() - start, busy))
    wall_s, busy_s = min(rows[1:])  # the least disturbed step
    return {"rank": rank, "micro_batches": micro_batches, "wall_ms": wall_s * 1e3, "busy_ms": busy_s * 1e3,
            "idle_fraction": 1 - busy_s / wall_s, "grads": [p.grad.clone() for p in stage.parameters()],
            "logits": logits, "loss": loss}
