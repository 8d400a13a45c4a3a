import argparse
import json

import numpy as np
import pytest
import torch

from labkit import bench


def test_percentiles_match_numpy():
    samples = np.arange(1, 101, dtype=float)
    row = bench.percentiles(samples)
    assert row["p50_ms"] == np.percentile(samples, 50) and row["p99_ms"] == np.percentile(samples, 99)
    assert row["max_over_min"] == 100.0


def test_time_calls_counts_and_warmup():
    calls = []
    samples = bench.time_calls(lambda: calls.append(1), repeats=7, warmup=3)
    assert len(samples) == 7 and len(calls) == 10 and (samples >= 0).all()


def test_bad_arguments():
    with pytest.raises(ValueError):
        bench.time_calls(lambda: None, repeats=0)
    with pytest.raises(ValueError):
        bench.percentiles(np.array([]))


# ------------------------------------------------------------------ sweeps, comparisons, the CLI
def _identity_input(b):
    return torch.ones(b, 4)


def test_throughput_row_uses_the_median():
    row = bench.throughput_row(np.array([1.0, 2.0, 3.0]), batch_size=8)
    assert row["p50_ms"] == 2.0 and row["throughput_sps"] == pytest.approx(8 / 2e-3)
    with pytest.raises(ValueError, match="batch_size"):
        bench.throughput_row(np.array([1.0]), batch_size=0)


def test_sweep_batch_sizes_table_shape_and_inputs():
    seen = []
    df = bench.sweep_batch_sizes(lambda x: seen.append(len(x)), _identity_input, (1, 4, 16), repeats=5, warmup=2)
    assert list(df["batch"]) == [1, 4, 16]
    assert {"p50_ms", "p90_ms", "p99_ms", "throughput_sps", "max_over_min"} <= set(df.columns)
    assert (df["p50_ms"] <= df["p99_ms"]).all() and (df["throughput_sps"] > 0).all()
    assert seen.count(4) == 7  # warm-up + repeats, each on the batch of that size


def test_compare_interleaves_and_reports_ratios_against_the_baseline():
    order = []
    variants = {"a": lambda x: order.append("a"), "b": lambda x: order.append("b"), "c": lambda x: order.append("c")}
    df = bench.compare(variants, _identity_input, batch_sizes=(2, 8), repeats=6, warmup=1, baseline="b")
    assert len(df) == 6 and set(df["variant"]) == {"a", "b", "c"} and set(df["batch"]) == {2, 8}
    assert (df.loc[df["variant"] == "b", "speedup"] == 1.0).all()
    timed = order[3:3 + 18]  # after the warm-up calls of batch 2: rounds of a, b, c in rotating order
    assert all(sorted(timed[i:i + 3]) == ["a", "b", "c"] for i in range(0, 18, 3))
    assert timed[0] != timed[3]  # the order rotates: no variant always goes first


def test_compare_runs_without_grad_and_accepts_any_batch_type():
    model = torch.nn.Linear(4, 2)
    grads = []
    df = bench.compare({"m": lambda x: grads.append(model(x).requires_grad)}, _identity_input, repeats=2, warmup=0)
    assert grads == [False, False] and len(df) == 1
    texts = bench.compare({"len": len}, lambda b: ["text"] * b, batch_sizes=(3,), repeats=2)
    assert texts["batch"].tolist() == [3]


@pytest.mark.parametrize("kwargs, message", [
    (dict(variants={}), "empty"), (dict(variants={"x": 3}), "not callable"),
    (dict(batch_sizes=(0,)), "batch_sizes"), (dict(repeats=0), "repeats"), (dict(baseline="zzz"), "baseline"),
])
def test_compare_rejects_bad_arguments(kwargs, message):
    args = dict(variants={"a": len}, make_input=_identity_input, batch_sizes=(1,), repeats=2)
    with pytest.raises(ValueError, match=message):
        bench.compare(**{**args, **kwargs})


def test_plot_sweep_draws_one_line_per_variant():
    import matplotlib
    matplotlib.use("Agg")
    df = bench.compare({"a": len, "b": len}, _identity_input, batch_sizes=(1, 2, 4), repeats=2)
    ax_lat, ax_thr = bench.plot_sweep(df)
    assert len(ax_lat.lines) == 2 and len(ax_thr.lines) == 2
    with pytest.raises(ValueError, match="columns"):
        bench.plot_sweep(df.drop(columns=["p99_ms"]))


def test_standard_models_accept_their_inputs_and_leave_the_rng_alone():
    state = torch.random.get_rng_state()
    models = bench.standard_models(seed=0)
    assert torch.equal(state, torch.random.get_rng_state())
    assert len(models) == 3
    for name, (model, make_input) in models.items():
        assert not model.training, name
        with torch.no_grad():
            assert model(make_input(3)).shape[0] == 3, name


def _parse(*argv):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_json_output(capsys):
    assert bench.run(_parse("--json", "--batch-sizes", "1,2", "--repeats", "2", "--threads", "1")) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["threads"] == 1 and out["repeats"] == 2
    assert len(out["results"]) == 3 * 2 and {"model", "batch", "p99_ms", "throughput_sps"} <= set(out["results"][0])


def test_cli_table_and_defaults(capsys):
    args = _parse("--quick", "--repeats", "1")
    assert args.batch_sizes is None
    assert bench.run(args) == 0
    assert "throughput_sps" in capsys.readouterr().out


def test_labkit_bench_defaults_to_models(capsys):
    from labkit import cli

    assert cli.main(["bench", "--quick", "--repeats", "1", "--batch-sizes", "1"]) == 0
    assert "throughput_sps" in capsys.readouterr().out


def test_cli_rejects_bad_values():
    with pytest.raises(SystemExit):
        _parse("--batch-sizes", "1,x")
    with pytest.raises(SystemExit):
        _parse("--batch-sizes", "0")
    with pytest.raises(ValueError, match="threads"):
        bench.run(_parse("--threads", "0"))


def test_full_gc_ms_measures_before_and_after_freeze_and_unfreezes():
    import gc

    out = bench.full_gc_ms()
    assert set(out) == {"tracked_objects", "full_pass_ms", "after_freeze_ms"}
    assert out["tracked_objects"] > 1000 and out["full_pass_ms"] > 0 and out["after_freeze_ms"] >= 0
    assert gc.get_freeze_count() == 0
    gc.freeze()
    try:
        with pytest.raises(RuntimeError, match="already frozen"):
            bench.full_gc_ms()
    finally:
        gc.unfreeze()


def test_pareto_keeps_only_rows_no_other_row_beats_on_both():
    import pandas as pd

    df = pd.DataFrame({"ms": [1.0, 2.0, 3.0, 2.0, 0.5], "accuracy": [0.8, 0.9, 0.85, 0.9, 0.7]},
                      index=["fast", "good", "dominated", "good twin", "fastest"])
    front = bench.pareto(df, "ms")
    assert front == ["fast", "good", "good twin", "fastest"]    # "dominated": slower and worse than "good"
    sizes = pd.DataFrame({"MB": [4.0, 1.0], "acc": [0.96, 0.95]}, index=["fp32", "int8"])
    assert bench.pareto(sizes, "MB", quality="acc") == ["fp32", "int8"]
    assert bench.pareto(sizes.assign(acc=[0.94, 0.95]), "MB", quality="acc") == ["int8"]
