"""labkit.export: the file is valid, ONNX Runtime computes what PyTorch computes, any batch size runs,
INT8 files are smaller and still agree, session options are applied, and bad inputs fail clearly."""
import copy

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from labkit import export
from labkit.metrics import max_abs_diff

torch.manual_seed(0)
MODEL = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3)).eval()
X = torch.randn(40, 1, 4, 4)


@pytest.fixture(scope="module")
def fp32_path(tmp_path_factory):
    return export.export_onnx(MODEL, X[:1], tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture(scope="module")
def session(fp32_path):
    return export.make_session(fp32_path, intra_op_threads=1)


def test_export_writes_one_checked_file_with_the_stated_opset(fp32_path):
    summary = export.graph_summary(fp32_path)
    assert summary["opset"] == export.OPSET
    assert summary["operators"].get("Gemm", 0) + summary["operators"].get("MatMul", 0) == 2
    extra = summary["initializer_values"] - sum(p.numel() for p in MODEL.parameters())
    assert 0 <= extra <= 4, "initializers: the weights plus the Reshape target shape"
    assert not list(fp32_path.parent.glob("*.data")), "weights must live inside the .onnx file"
    onnx.checker.check_model(onnx.load(str(fp32_path)))


def test_batch_axis_is_symbolic_so_any_batch_runs(fp32_path, session):
    assert export.graph_summary(fp32_path)["input"] == "input ['batch', 1, 4, 4]"
    for n in (1, 7, 32):
        assert export.run_session(session, X[:n]).shape == (n, 3)


def test_parity_within_1e_4_on_batch_1_and_32(session):
    for n in (1, 32):
        assert export.parity(MODEL, session, X[:n]) <= 1e-4


def test_parity_sees_a_stale_model(session):
    stale = copy.deepcopy(MODEL)  # the same architecture with other weights (fresh random ones could coincide
    with torch.no_grad():          # with MODEL's when another test module left the RNG at seed 0)
        stale[1].weight.add_(0.5)
    assert export.parity(stale, session, X[:8]) > 1e-3


def test_fixed_batch_export_rejects_other_batch_sizes(tmp_path):
    path = export.export_onnx(MODEL, X[:1], tmp_path / "fixed.onnx", dynamic_batch=False)
    session = export.make_session(path)
    assert export.run_session(session, X[:1]).shape == (1, 3)
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        export.run_session(session, X[:32])


def test_export_of_a_training_mode_model_is_deterministic(tmp_path):
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2)).train()
    path = export.export_onnx(model, torch.randn(3, 4), tmp_path / "drop.onnx")
    assert model.training
    session, x = export.make_session(path), torch.randn(16, 4)
    assert np.array_equal(export.run_session(session, x), export.run_session(session, x))
    assert export.parity(model, session, x) <= 1e-5  # parity() compares against eval mode
    assert model.training, "parity() must leave the caller's model in its mode"


def test_quantized_files_are_smaller_and_agree(tmp_path):
    torch.manual_seed(1)
    wide = nn.Sequential(nn.Linear(16, 256), nn.ReLU(), nn.Linear(256, 3)).eval()
    x = torch.randn(64, 16)
    src = export.export_onnx(wide, x[:2], tmp_path / "wide.onnx")
    dyn = export.quantize_dynamic_int8(src, tmp_path / "wide_dyn.onnx")
    sta = export.quantize_static_int8(src, tmp_path / "wide_static.onnx", calibration=x)
    reference = wide(x).argmax(1).numpy()
    for path, op in ((dyn, "MatMulInteger"), (sta, "QuantizeLinear")):
        assert export.file_size_kb(path) < 0.5 * export.file_size_kb(src)
        assert op in export.graph_summary(path)["operators"]
        agree = (export.run_session(export.make_session(path), x).argmax(1) == reference).mean()
        assert agree >= 0.9, f"{path.name}: only {agree:.0%} of predictions agree with fp32"


def test_session_options_are_applied(fp32_path, tmp_path):
    optimized = tmp_path / "optimized.onnx"
    session = export.make_session(fp32_path, intra_op_threads=1, inter_op_threads=2, optimization="basic",
                                  providers=["CPUExecutionProvider"], optimized_path=optimized, spinning=False)
    options = session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 2)
    assert options.graph_optimization_level == export._level("basic")
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert optimized.exists()


def test_session_accuracy_matches_pytorch(session):
    y = MODEL(X).argmax(1)
    assert export.session_accuracy(session, X, y, batch_size=16) == 1.0


def test_bad_inputs_fail_with_clear_errors(fp32_path, session, tmp_path):
    with pytest.raises(FileNotFoundError, match="no ONNX file"):
        export.make_session(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="optimization must be one of"):
        export.make_session(fp32_path, optimization="max")
    with pytest.raises(ValueError, match="not in this onnxruntime build"):
        export.make_session(fp32_path, providers=["NoSuchExecutionProvider"])
    with pytest.raises(ValueError, match=r"shape \(4, 3\) and \(4, 2\)"):
        max_abs_diff(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="cannot compare"):
        export.parity(nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).eval(), session, X[:4])
    with pytest.raises(ValueError, match="batched tensor"):
        export.export_onnx(MODEL, np.zeros((1, 16)), tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="calibration data is empty"):
        export.ArrayCalibrationReader(np.zeros((0, 16)))
    with pytest.raises(ValueError, match="equally long"):
        export.session_accuracy(session, X[:4], torch.zeros(3))


def test_pick_within_budget_takes_the_smallest_that_keeps_accuracy():
    rows = [dict(name="big", size_kb=300, p99_ms=0.5, accuracy=0.99),
            dict(name="int8", size_kb=80, p99_ms=0.4, accuracy=0.975),
            dict(name="small", size_kb=20, p99_ms=0.1, accuracy=0.97),
            dict(name="tiny", size_kb=5, p99_ms=0.1, accuracy=0.90),
            dict(name="slow", size_kb=50, p99_ms=9.0, accuracy=0.98)]
    assert export.pick_within_budget(rows, 100, 1.0)["name"] == "small"  # within 1 pt of int8's 97.5%
    assert export.pick_within_budget(rows, 100, 1.0, accuracy_tolerance=0.0)["name"] == "int8"
    assert export.pick_within_budget(rows, 1, 1.0) is None
    with pytest.raises(ValueError, match="need the keys"):
        export.pick_within_budget([dict(size_kb=1)], 100, 1.0)
    with pytest.raises(ValueError, match="positive"):
        export.pick_within_budget(rows, 0, 1.0)
