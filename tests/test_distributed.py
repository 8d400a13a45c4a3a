"""labkit.distributed: DDP is synchronous SGD (ranks bit-identical, equal to one process), the pipeline equals the
unsplit model, FSDP stores half the parameters per rank, and no rank outlives a failure. Two gloo ranks on CPU.

torchrun (`python -m labkit.distributed`) is run and asserted by notebook 08 section 7, which CI executes: one
more fresh pair of ranks here would cost seconds for the same check."""
import functools

import pytest
import torch
import torch.multiprocessing as mp

from labkit.distributed import costs, ddp, fsdp, launch, pipeline


@pytest.fixture(scope="module")
def data():
    return ddp.digits_flat(512)


@pytest.fixture(scope="module")
def cluster():
    with launch.Cluster(2) as running:  # one start-up (seconds) shared by every test that needs two ranks
        yield running


def test_ddp_ranks_bit_identical_and_equal_to_single_process(cluster, data):
    X, y = data
    config = ddp.DDPConfig(steps=6, global_batch=64)
    ranks = cluster.run(ddp.train_on_rank, X, y, config)
    single = ddp.train_single(X, y, config)
    report = ddp.sync_report(ranks, single)
    assert report["bit_identical"], "DDP ranks drifted apart"
    assert report["max_abs_diff_vs_single"] < 1e-5, report
    assert not torch.equal(single, ddp.flat_params(ddp.make_model(config))), "training moved no weight"
    # the ranks start from different seeds: without DDP's broadcast rank 1 would not match
    assert not torch.equal(ddp.flat_params(ddp.make_model(config, 0)), ddp.flat_params(ddp.make_model(config, 1)))


def test_pipeline_equals_the_unsplit_model(cluster, data):
    X, y = data
    config = pipeline.PipeConfig(width=64, depth=4, batch=64)
    ref = pipeline.reference_step(pipeline.make_deep_mlp(config), X[:64], y[:64])
    for micro_batches in (1, 4):
        first, last = cluster.run(pipeline.pipeline_on_rank, X, y, config, micro_batches, 1)
        assert torch.allclose(last["logits"], ref["logits"], atol=1e-6)
        assert abs(last["loss"] - ref["loss"]) < 1e-6
        for got, want in zip(first["grads"] + last["grads"], ref["grads"], strict=True):
            assert torch.allclose(got, want, atol=1e-6)
        assert 0 <= first["idle_fraction"] < 1 and first["busy_ms"] > 0


def test_fsdp_shards_parameters_and_takes_the_same_step(cluster, data):
    X, y = data
    model_fn = functools.partial(ddp.make_model, ddp.DDPConfig(hidden=(128, 64)))
    ranks = cluster.run(fsdp.fsdp_on_rank, model_fn, X[:64], y[:64])
    single = fsdp.single_step(model_fn, X[:64], y[:64])
    for row in ranks:
        assert row["local_param_bytes"] <= row["full_param_bytes"] / 2 + 1024  # 1/2 plus padding of odd rows
        assert torch.allclose(row["params"], single, atol=1e-6)


def test_no_sync_accumulation_skips_all_reduces_with_the_same_gradients(cluster, data):
    X, y = data
    rows = cluster.run(costs.accumulation_on_rank, X, y, ddp.DDPConfig(), 4, 1)
    for row in rows:
        assert row["sync_every_calls"] == 4 and row["no_sync_calls"] == 1
        assert row["max_grad_diff"] < 1e-6


def test_bucket_cap_sets_the_number_of_all_reduces(cluster, data):
    X, y = data
    rows = cluster.run(costs.bucket_sweep_on_rank, X, y, ddp.DDPConfig(hidden=(256, 256)), (0.01, 25.0), 1)[0]
    assert rows[0]["allreduce_calls_per_step"] > rows[1]["allreduce_calls_per_step"] == 1


def test_measured_all_reduce_bytes_match_the_ring_formula(cluster):
    for row in cluster.run(costs.allreduce_bytes_on_rank, 50_000, 2):
        assert row["ring_formula_bytes"] == row["tensor_bytes"]  # n = 2: 2(n-1)/n = 1
        assert abs(row["measured_bytes"] / row["ring_formula_bytes"] - 1) < 0.05, row


def test_spawn_ends_every_rank_when_one_fails():
    before = {p.pid for p in mp.active_children()}
    with pytest.raises(mp.ProcessRaisedException):  # rank 1 raised, or rank 0 saw its partner vanish
        launch.spawn(launch.fail_on_rank, 2, (1,), collect=False)
    assert {p.pid for p in mp.active_children()} <= before, "a rank outlived the failure"


def test_sampler_shards_pad_or_drop_unless_divisible():
    even = ddp.shard_report(ddp.sampler_shards(12, 2), 12)
    assert even["disjoint"] and even["complete"] and even["sizes"] == [6, 6]
    padded = ddp.shard_report(ddp.sampler_shards(10, 4), 10)
    assert padded["complete"] and not padded["disjoint"] and padded["repeated"] == 2
    dropped = ddp.shard_report(ddp.sampler_shards(10, 4, drop_last=True), 10)
    assert dropped["disjoint"] and not dropped["complete"] and dropped["missing"] == 2
    assert ddp.sampler_shards(12, 2, epoch=0) != ddp.sampler_shards(12, 2, epoch=1), "set_epoch reshuffles"


def test_formulas_and_split():
    assert costs.ring_bytes_per_rank(100.0, 2) == 100.0 and costs.ring_bytes_per_rank(100.0, 4) == 150.0
    assert pipeline.bubble_fraction(2, 1) == 0.5 and pipeline.bubble_fraction(4, 5) == 3 / 8
    model = pipeline.make_deep_mlp(pipeline.PipeConfig(width=16, depth=4))
    first, last = pipeline.split_stages(model)
    x = torch.randn(5, 64)
    assert torch.equal(last(first(x)), model(x)) and len(first) == 4


def test_pick_backend_without_gpus_is_gloo():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    assert launch.pick_backend(2) == "gloo"


def test_cluster_error_names_the_rank_and_ends_every_rank(cluster):
    """last: it ends the shared cluster (a healthy rank blocked in a collective is killed, not waited for)"""
    with pytest.raises(launch.RemoteError, match="rank 1 raised"):
        cluster.run(launch.fail_on_rank, 1)
    assert launch.alive(cluster.processes) == 0
