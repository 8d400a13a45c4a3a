"""labkit.accelerate: structure and correctness of each lever (never its speed)."""
import functools

import pytest
import torch
from torch.utils.data import DataLoader

from labkit import accelerate
from labkit.models import MLP, SmallCNN


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    return MLP(16, hidden=(32,)).eval()


def test_pick_device_and_report():
    assert accelerate.pick_device("cpu").type == "cpu"
    report = accelerate.environment_report()
    assert {"torch", "torch intra-op threads", "gpu"} <= set(report)


def test_cpu_capability_names_the_isa():
    cap = accelerate.cpu_capability()
    assert isinstance(cap["isa"], str) and cap["isa"]
    assert isinstance(cap["avx512_bf16"], bool) and isinstance(cap["amx_bf16"], bool)


def test_thread_sweep_restores_threads_and_reports_each_count(mlp):
    before = torch.get_num_threads()
    df = accelerate.thread_sweep(mlp, torch.rand(4, 16), 4, thread_counts=(1, 2), repeats=6, warmup=1, rounds=2)
    assert torch.get_num_threads() == before
    assert df["threads"].tolist() == [1, 2] and df["speedup"].iloc[0] == 1.0
    assert (df["throughput_sps"] > 0).all()
    with pytest.raises(ValueError, match="thread_counts"):
        accelerate.thread_sweep(mlp, torch.rand(1, 16), 1, thread_counts=(0,))


def test_parallel_throughput_counts_all_samples_and_restores_threads(mlp):
    before, calls = torch.get_num_threads(), []
    row = accelerate.parallel_throughput(lambda x: calls.append(mlp(x)), torch.rand(3, 16), 3, workers=2,
                                         threads_per_worker=1, calls_per_worker=4)
    assert torch.get_num_threads() == before
    assert len(calls) == 2 * (4 + 1) and row["total_threads"] == 2 and row["throughput_sps"] > 0
    assert not any(out.requires_grad for out in calls)  # no_grad is set inside every worker thread


def test_parallel_throughput_reports_a_failing_worker():
    def boom(_):
        raise ValueError("bad batch")
    with pytest.raises(RuntimeError, match="bad batch"):
        accelerate.parallel_throughput(boom, None, 1, workers=2, threads_per_worker=1)


def test_bf16_autocast_is_close_to_fp32_and_really_low_precision(mlp):
    x = torch.rand(8, 16)
    bf16 = accelerate.autocast_fn(mlp, "cpu", torch.bfloat16)
    with torch.no_grad():
        assert bf16(x).dtype == torch.bfloat16
    diff = accelerate.output_gap(mlp, bf16, x)
    assert 0 < diff < 0.1  # bf16 keeps ~3 significant digits: different, but close
    with pytest.raises(ValueError, match="dtype"):
        accelerate.autocast_fn(mlp, "cpu", torch.float64)


def test_output_gap_rejects_shape_mismatch(mlp):
    with pytest.raises(ValueError, match="shape"):
        accelerate.output_gap(mlp, lambda x: mlp(x)[:, :3], torch.rand(2, 16))


def test_compiled_output_equals_eager_or_the_error_is_reported(mlp):
    x = torch.rand(4, 16)
    result = accelerate.compile_and_time(mlp, x)
    if result.error is not None:  # e.g. no C++ compiler on this machine: the failure is data, not a crash
        assert result.fn is None and result.error
        pytest.skip(f"torch.compile unavailable here: {result.error[:120]}")
    assert result.compile_s > 0
    assert accelerate.output_gap(mlp, result.fn, x) < 1e-5


def test_compile_failure_is_caught_with_its_message(mlp):
    result = accelerate.compile_and_time(mlp, torch.rand(2, 16), backend="no_such_backend")
    assert result.fn is None and result.compile_s != result.compile_s  # NaN
    assert "no_such_backend" in result.error


@pytest.mark.parametrize("resident", [False, True])
def test_on_device_gives_the_same_output(mlp, resident):
    x = torch.rand(5, 16)
    fn = accelerate.on_device(mlp, "cpu", resident=resident)
    with torch.no_grad():
        assert torch.equal(fn(x), mlp(x)) and torch.equal(fn(x), mlp(x))  # twice: the kept copy is reused


def test_h2d_copy_needs_cuda():
    with pytest.raises(ValueError, match="CUDA"):
        accelerate.h2d_copy([1.0], device="cpu")


def test_transform_dataset_and_loader_throughput():
    X, y = torch.rand(10, 3, 16, 16), torch.arange(10)
    mean, std = torch.zeros(3), torch.ones(3)
    ds = accelerate.TransformDataset(X, y, functools.partial(accelerate.resize_standardize, size=8, mean=mean, std=std))
    img, label = ds[3]
    assert img.shape == (3, 8, 8) and label == 3
    model, seen = SmallCNN(3, 10, image_size=8).eval(), []
    stats = accelerate.loader_throughput(DataLoader(ds, batch_size=4), consume=lambda xb: seen.append(model(xb)))
    assert stats["samples"] == 10 and stats["batches"] == 3 and len(seen) == 3 and stats["samples_per_s"] > 0
    with pytest.raises(ValueError, match="rows"):
        accelerate.TransformDataset(X, y[:5], lambda t: t)


def test_loader_with_two_workers_yields_the_same_batches():
    X, y = torch.rand(12, 3, 8, 8), torch.arange(12)
    ds = accelerate.TransformDataset(X, y, functools.partial(accelerate.resize_standardize, size=4,
                                                             mean=torch.zeros(3), std=torch.ones(3)))
    serial = [xb for xb, _ in DataLoader(ds, batch_size=4)]
    parallel = [xb for xb, _ in DataLoader(ds, batch_size=4, num_workers=2)]
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel)) and len(parallel) == 3


def test_low_precision_copy_keeps_the_original_and_stays_close(mlp):
    x = torch.rand(8, 16)
    bf16 = accelerate.low_precision_copy(mlp, torch.bfloat16)
    with torch.no_grad():
        assert bf16(x).dtype == torch.bfloat16
    assert next(mlp.parameters()).dtype == torch.float32  # a copy was converted, not the caller's model
    assert accelerate.output_gap(mlp, bf16, x) < 0.1
    with pytest.raises(ValueError, match="dtype"):
        accelerate.low_precision_copy(mlp, torch.int8)
