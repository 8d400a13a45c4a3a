"""Hidden tests for ddp_training: uneven shards, buffers and another source rank, a deeper model trained longer."""
from functools import partial

from labkit.exercises.ddp_training import _mlp, check_average, check_broadcast, check_shards, check_training


def test_hidden_shards_uneven_and_seeded(sub):
    """7 and 1 samples on two ranks stay disjoint and complete; another seed gives another order"""
    check_shards(sub, 7, epoch=2, seed=11)
    check_shards(sub, 1, epoch=0, seed=0)
    orders = {tuple(check_shards(sub, 50, epoch=0, seed=s)) for s in (1, 2, 3)}
    assert len(orders) > 1, "the seed does not change the shuffle"


def test_hidden_broadcast_buffers_from_rank_1(sub):
    """BatchNorm running statistics travel too, and src=1 is honoured"""
    def model_fn(seed):
        model = _mlp(seed, batch_norm=True)
        model[1].running_mean.fill_(float(seed))  # buffers differ per rank
        return model

    check_broadcast(sub, model_fn, src=1)
    check_average(sub, partial(_mlp, hidden=40))


def test_hidden_training_deeper_and_longer(sub):
    """a wider model over 10 steps of a 48-sample global batch: still bit-identical and equal to one process"""
    check_training(sub, partial(_mlp, hidden=48), steps=10, global_batch=48, lr=0.1)


TESTS = (test_hidden_shards_uneven_and_seeded, test_hidden_broadcast_buffers_from_rank_1,
         test_hidden_training_deeper_and_longer)
