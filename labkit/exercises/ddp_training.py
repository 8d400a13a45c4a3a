"""Exercise: data parallel training by hand (sharding, broadcast, gradient all-reduce), graded on two gloo ranks.

`labkit grade` starts two runners at once (Exercise.world_size = 2), each under the grader's limits and audit
hook; prepare() joins them into one gloo group before the submission is imported. Every test runs on both ranks
and passes only if it passes on both. Each rank's submission sees only its own rows: the data is drawn from a
secret seed that rank 0 sends rank 1 from the tests' own code, so matching the single-process reference needs
real synchronization.
"""
import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from labkit.grading.exercise import Exercise
from labkit.grading.toys import blobs

TASK = """
Write the synchronization that DistributedDataParallel does for you, with `torch.distributed` collectives. Your
code runs in **two processes** (ranks 0 and 1 of a gloo process group the grader has already set up:
`dist.get_rank()`, `dist.get_world_size()` work; do not call `init_process_group`).

- `shard_indices(num_samples, rank, world_size, epoch, seed)` → `list[int]`: this rank's share of a shuffled
  epoch, like `DistributedSampler` without padding: the order depends only on `(seed, epoch)` (every rank
  computes the same permutation without talking to the others), a new epoch reshuffles, and the ranks' shares
  are **disjoint**, their union is **every index**, and their sizes differ by at most one.
- `broadcast_parameters(model, src=0)`: every rank ends with rank `src`'s parameters **and buffers** (e.g.
  BatchNorm's running statistics), in place.
- `average_gradients(model)`: every parameter's `.grad` becomes the mean over the ranks (all-reduce, then divide),
  in place; parameters without a gradient are skipped.
- `train_data_parallel(model, local_batches, lr)` → the model: broadcast rank 0's parameters, then for each
  `(x, y)` of **this rank's** batches one plain SGD step on the mean cross-entropy of the local batch with
  averaged gradients: `p -= lr * p.grad` under `torch.no_grad()` (what `torch.optim.SGD(params, lr)` does; the
  optimizer also works, but its first use costs a few seconds of imports per process). The ranks' local batches are equal-sized halves of
  each global batch, so this is exactly one process training on the whole global batch.

Graded on two real processes: shards gathered from both ranks are disjoint and complete; after
`broadcast_parameters` both ranks hold rank `src`'s values; after `average_gradients` each gradient is the mean of
the two ranks' gradients; after training the ranks are **bit-identical** and equal (1e-5) to single-process SGD on
the concatenated global batches. Do not import `labkit.distributed`. Taught in notebook 08 §2 "DDP: one
process per rank, one all-reduce per bucket" and §3 "Proof of synchronization".
"""

STUB = '''
import torch
import torch.distributed as dist
from torch import nn


def shard_indices(num_samples: int, rank: int, world_size: int, epoch: int, seed: int) -> list[int]:
    """This rank's disjoint share of a permutation that depends only on (seed, epoch)."""
    raise NotImplementedError("shard_indices")


def broadcast_parameters(model: nn.Module, src: int = 0) -> None:
    """Every rank ends with rank src's parameters and buffers."""
    raise NotImplementedError("broadcast_parameters")


def average_gradients(model: nn.Module) -> None:
    """Every .grad becomes the mean over the ranks."""
    raise NotImplementedError("average_gradients")


def train_data_parallel(model: nn.Module, local_batches: list, lr: float) -> nn.Module:
    """Broadcast rank 0's weights, then one synchronized SGD step per local (x, y) batch."""
    raise NotImplementedError("train_data_parallel")
'''

# Bound at import, before the submission exists: a submission that patches torch or torch.distributed during
# a test changes nothing the tests use (and the grader's snapshot reports the patch after the test).
_all_gather, _all_gather_object = dist.all_gather, dist.all_gather_object
_broadcast, _equal, _allclose, _cat, _urandom = dist.broadcast, torch.equal, torch.allclose, torch.cat, os.urandom
_cross_entropy, _tensor, _randperm = nn.functional.cross_entropy, torch.tensor, torch.randperm


def prepare() -> None:
    """Join the gloo group of the runners `labkit grade` started, one per rank (before the submission exists)."""
    if dist.is_initialized():
        return
    if "LABKIT_RANK" not in os.environ:
        raise RuntimeError("ddp_training runs under `labkit grade`, which starts one process per rank")
    dist.init_process_group("gloo", init_method=f"tcp://{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}",
                            rank=int(os.environ["LABKIT_RANK"]), world_size=int(os.environ["LABKIT_WORLD_SIZE"]),
                            timeout=timedelta(seconds=15))  # a rank whose partner broke fails instead of hanging


def _rank() -> tuple[int, int]:
    prepare()
    return dist.get_rank(), dist.get_world_size()


def _everyone(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's copy of `tensor`, gathered by the tests' own call."""
    out = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    _all_gather(out, tensor.contiguous())
    return out


def _flat(values) -> torch.Tensor:
    return _cat([v.detach().reshape(-1).float() for v in values])


def _shared_secret() -> int:
    """A seed rank 0 draws from os.urandom and sends to every rank: the submission cannot know it in advance."""
    seed = _tensor([int.from_bytes(_urandom(6), "little")])
    _broadcast(seed, src=0)
    return int(seed.item())


def _mlp(seed: int, features: int = 12, hidden: int = 16, classes: int = 3, batch_norm: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Linear(features, hidden)] + ([nn.BatchNorm1d(hidden)] if batch_norm else []) + [
        nn.ReLU(), nn.Linear(hidden, classes)]
    return nn.Sequential(*layers)


def check_shards(sub, num_samples: int, epoch: int, seed: int) -> list[int]:
    """Gather every rank's shard (each computed on its own rank) and check disjoint, complete, balanced."""
    rank, world_size = _rank()
    mine = [int(i) for i in sub.shard_indices(num_samples, rank, world_size, epoch, seed)]
    shards = [None] * world_size
    _all_gather_object(shards, mine)
    seen = [i for shard in shards for i in shard]
    assert len(set(seen)) == len(seen), f"shards overlap for {num_samples} samples on {world_size} ranks: {shards}"
    assert sorted(seen) == list(range(num_samples)), f"shards do not cover 0..{num_samples - 1}: {shards}"
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1, f"shard sizes {sizes} differ by more than one"
    return mine


def test_shards_disjoint_and_complete(sub):
    """each rank's shard, gathered: disjoint, union = every index, sizes within one; reshuffled by epoch"""
    first = check_shards(sub, 10, epoch=0, seed=3)
    check_shards(sub, 9, epoch=0, seed=3)
    again = check_shards(sub, 10, epoch=0, seed=3)
    assert first == again, "same (seed, epoch), different shard: the order must depend only on seed and epoch"
    orders = {tuple(check_shards(sub, 40, epoch=e, seed=3)) for e in range(3)}
    assert len(orders) > 1, "every epoch gave the same shard: use the epoch in the shuffle"


def check_broadcast(sub, model_fn, src: int) -> None:
    """Ranks start different; after sub.broadcast_parameters(model, src) all hold rank src's state."""
    rank, _ = _rank()
    model = model_fn(1000 + rank)
    state = model.state_dict()
    before = _everyone(_flat(state.values()))
    assert not _equal(before[0], before[1]), "test set-up: ranks should start different"
    sub.broadcast_parameters(model, src=src)
    after = _everyone(_flat(model.state_dict().values()))
    for r, got in enumerate(after):
        assert _equal(got, before[src]), f"rank {r} does not hold rank {src}'s parameters and buffers after broadcast"


def test_broadcast_parameters(sub):
    """ranks initialised differently all hold rank 0's parameters after the broadcast"""
    check_broadcast(sub, _mlp, src=0)


def check_average(sub, model_fn) -> None:
    """Secret per-rank gradients; after sub.average_gradients each .grad is the mean over ranks on every rank."""
    _rank()
    model = model_fn(7)
    g = torch.Generator().manual_seed(int.from_bytes(_urandom(6), "little"))
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g)
    originals = _everyone(_flat(p.grad for p in model.parameters()))
    want = sum(originals) / len(originals)
    sub.average_gradients(model)
    got = _flat(p.grad for p in model.parameters())
    assert _allclose(got, want, atol=1e-6), "a gradient is not the mean of the ranks' gradients"
    copies = _everyone(got)
    assert all(_equal(copies[0], c) for c in copies), "ranks hold different averaged gradients"


def test_average_gradients(sub):
    """random gradients that differ per rank become their mean, identical on every rank"""
    check_average(sub, _mlp)


def check_training(sub, model_fn, steps: int, global_batch: int, lr: float) -> None:
    """Train on this rank's halves of secret global batches; ranks bit-identical and equal to one process."""
    rank, world_size = _rank()
    secret = _shared_secret()
    X, y = blobs(steps * global_batch, features=12, classes=3, noise=1.0, seed=secret)
    order = _randperm(len(X), generator=torch.Generator().manual_seed(secret)).view(steps, global_batch)
    local = global_batch // world_size
    mine = [(X[idx[rank * local:(rank + 1) * local]], y[idx[rank * local:(rank + 1) * local]]) for idx in order]
    model = sub.train_data_parallel(model_fn(2000 + rank), mine, lr)
    trained = _flat(model.parameters())
    copies = _everyone(trained)
    assert all(_equal(copies[0], c) for c in copies), "ranks are not bit-identical after training"
    reference = model_fn(2000)  # rank 0's start: the one your broadcast must share
    for idx in order:  # plain SGD by hand: torch.optim's first use imports torch._dynamo, seconds per process
        reference.zero_grad()
        _cross_entropy(reference(X[idx]), y[idx]).backward()
        with torch.no_grad():
            for p in reference.parameters():
                p.add_(p.grad, alpha=-lr)
    gap = float((trained - _flat(reference.parameters())).abs().max())
    assert gap < 1e-5, f"differs from one process on the whole global batch by {gap:.2e} (> 1e-5)"
    assert not _equal(trained, _flat(model_fn(2000).parameters())), "training did not move the weights"


def test_training_matches_single_process(sub):
    """after 6 steps: ranks bit-identical and equal to single-process SGD on the concatenated global batches"""
    check_training(sub, _mlp, steps=6, global_batch=32, lr=0.2)


EXERCISE = Exercise(
    name="ddp_training", title="Exercise · Data parallel training by hand", task=TASK, stub=STUB,
    tests=(test_shards_disjoint_and_complete, test_broadcast_parameters, test_average_gradients,
           test_training_matches_single_process),
    prepare=prepare, world_size=2, time_limit_s=60.0,  # two processes importing torch: ~10 s on a quiet machine
    protected_modules=("labkit.distributed",),
)
