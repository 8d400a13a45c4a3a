"""labkit.compress and labkit.distill: correctness on tiny models (never timing)."""
import copy

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from labkit import compress, distill, models
from labkit.train import model_accuracy


def tiny_mlp(seed: int = 0, hidden=(32, 16)) -> models.MLP:
    torch.manual_seed(seed)
    return models.MLP(12, hidden, num_classes=4).eval()


def blobs(n: int = 120, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    return torch.randn(n, 12, generator=g) * 0.3 + F.one_hot(y, 12).float() * 2, y


# ---------------------------------------------------------------- measuring


def test_serialized_size_and_accuracy():
    model = tiny_mlp()
    n_params = models.count_parameters(model)
    assert n_params * 4 / 1e6 < compress.serialized_mb(model) < n_params * 4 / 1e6 + 0.01  # fp32 + small header
    X, y = blobs()
    logits = model(X)
    assert model_accuracy(model, X, y, batch_size=7) == pytest.approx((logits.argmax(1) == y).float().mean().item())
    with pytest.raises(ValueError, match="equally long"):
        model_accuracy(model, X, y[:3])


def test_caught_warnings_returns_result_and_messages():
    import warnings

    def noisy():
        warnings.warn("old API", DeprecationWarning)
        warnings.warn("old API", DeprecationWarning)
        return 42

    assert compress.caught_warnings(noisy) == (42, ["DeprecationWarning: old API"])


# ---------------------------------------------------------------- pruning


@pytest.mark.parametrize("amount", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_magnitude_prune_hits_the_sparsity_and_keeps_the_original(amount, scope):
    model = tiny_mlp()
    before = copy.deepcopy(model.state_dict())
    pruned = compress.magnitude_prune(model, amount, scope=scope)
    assert compress.weight_sparsity(pruned) == pytest.approx(amount, abs=0.01)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items()), "the input must not change"
    assert set(pruned.state_dict()) == set(model.state_dict()), "masks must be made permanent (prune.remove)"


def test_global_pruning_removes_the_smallest_weights_overall():
    model = tiny_mlp()
    pruned = compress.magnitude_prune(model, 0.5)
    weights = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, nn.Linear)])
    kept = torch.cat([m.weight.flatten() for m in pruned.modules() if isinstance(m, nn.Linear)]) != 0
    assert weights.abs()[kept].min() >= weights.abs()[~kept].max()


def test_prune_neurons_shrinks_layers_and_matches_zeroed_neurons():
    model = tiny_mlp()
    masks = compress.neuron_keep_masks(model, 0.5)
    pruned = compress.prune_neurons(model, 0.5)
    linears = [m for m in pruned.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(12, 16), (16, 8), (8, 4)]
    zeroed = copy.deepcopy(model)
    with torch.no_grad():
        for layer, keep in zip([m for m in zeroed.modules() if isinstance(m, nn.Linear)], masks):
            layer.weight[~keep] = 0
            layer.bias[~keep] = 0
    X, _ = blobs()
    assert torch.allclose(pruned(X), zeroed(X), atol=1e-6), "removing neurons must equal zeroing them (ReLU)"
    assert models.count_parameters(pruned) < models.count_parameters(model)


def test_prune_neurons_keeps_the_strongest_rows_and_zero_is_identity():
    model = tiny_mlp()
    keep = compress.neuron_keep_masks(model, 0.25)[0]
    norms = model.net[1].weight.norm(dim=1)
    assert norms[keep].min() >= norms[~keep].max() and int(keep.sum()) == 24
    X, _ = blobs()
    assert torch.allclose(compress.prune_neurons(model, 0.0)(X), model(X))


def test_pruning_bad_inputs():
    with pytest.raises(ValueError, match="amount"):
        compress.magnitude_prune(tiny_mlp(), 1.0)
    with pytest.raises(ValueError, match="scope"):
        compress.magnitude_prune(tiny_mlp(), 0.5, scope="row")
    with pytest.raises(ValueError, match="no Linear or Conv2d"):
        compress.weight_sparsity(nn.ReLU())
    with pytest.raises(ValueError, match="chain"):
        compress.prune_neurons(models.MLP(12, (8,), num_classes=4, batch_norm=True), 0.5)


# ---------------------------------------------------------------- low rank


def test_low_rank_linear_error_falls_with_rank_and_is_exact_at_full_rank():
    torch.manual_seed(0)
    layer = nn.Linear(20, 12)
    X = torch.randn(50, 20)
    errors = [(compress.low_rank_linear(layer, r)(X) - layer(X)).norm().item() for r in (1, 3, 6, 9, 12)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-4
    with pytest.raises(ValueError, match="rank"):
        compress.low_rank_linear(layer, 13)


def test_low_rank_linear_is_the_best_rank_r_approximation():
    torch.manual_seed(0)
    layer = nn.Linear(10, 8)
    factors = compress.low_rank_linear(layer, 3)
    product = factors[1].weight @ factors[0].weight  # (8, 10)
    S = torch.linalg.svdvals(layer.weight.detach())
    assert (product - layer.weight).norm().item() == pytest.approx(S[3:].norm().item(), rel=1e-4)  # Eckart-Young


def test_low_rank_conv_exact_at_full_rank_and_shapes():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, padding=1)
    X = torch.randn(2, 3, 9, 9)
    full = compress.low_rank_conv(conv, 8)
    assert torch.allclose(full(X), conv(X), atol=1e-5)
    assert compress.low_rank_conv(conv, 2)(X).shape == conv(X).shape
    with pytest.raises(ValueError, match="groups"):
        compress.low_rank_conv(nn.Conv2d(4, 4, 3, groups=2), 1)


def test_factorize_replaces_only_layers_it_shrinks():
    model = tiny_mlp(hidden=(64, 64))
    small = compress.factorize(model, 4)
    assert models.count_parameters(small) < models.count_parameters(model)
    assert isinstance(small.net[-1], nn.Linear), "Linear(64, 4) has rank 4: factoring it saves nothing"
    assert isinstance(small.net[4], nn.Sequential)
    cnn = models.SmallCNN(channels=(8, 16), hidden=16).eval()
    X = torch.rand(2, 1, 8, 8)
    assert compress.factorize(cnn, 2, convs=True)(X).shape == (2, 10)
    with pytest.raises(ValueError):
        compress.factorize(model, 0)


# ---------------------------------------------------------------- quantization


def trained_mlp() -> tuple[models.MLP, torch.Tensor, torch.Tensor]:
    model, (X, y) = tiny_mlp(), blobs()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(60):
        loss = F.cross_entropy(model(X), y)
        opt.zero_grad(); loss.backward(); opt.step()
    return model.eval(), X, y


def test_dynamic_int8_legacy_is_close_and_warns():
    model, X, y = trained_mlp()
    quantized, messages = compress.dynamic_int8_legacy(model)
    scale = model(X).abs().max()
    assert (quantized(X) - model(X)).abs().max() < 0.05 * scale, "INT8 logits must stay within 5% of the range"
    assert model_accuracy(quantized, X, y) >= model_accuracy(model, X, y) - 0.02
    assert any("deprecated" in m for m in messages)
    assert compress.serialized_mb(quantized) < compress.serialized_mb(model)


def test_quantize_static_uses_inputs_only_and_stays_close():
    model, X, y = trained_mlp()
    before = copy.deepcopy(model.state_dict())
    quantized = compress.quantize_static(model, [X[:60], X[60:]])
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items()), "PTQ must not change weights"
    scale = model(X).abs().max()
    assert (quantized(X) - model(X)).abs().max() < 0.1 * scale, "INT8 logits must stay within 10% of the range"
    assert quantized(X[:1]).shape == (1, 4), "the batch axis must stay dynamic"
    assert model_accuracy(quantized, X, y) >= model_accuracy(model, X, y) - 0.02
    int8 = [t for t in quantized.state_dict().values() if t.dtype == torch.int8]
    assert int8 and not any(t.dtype == torch.float32 and t.dim() == 2 for t in quantized.state_dict().values())
    with pytest.raises(ValueError, match="calibration"):
        compress.quantize_static(model, [])


def test_compiled_int8_matches_the_eager_graph():
    model, X, y = trained_mlp()
    quantized = compress.quantize_static(model, [X])
    compiled = compress.compile_cpu(quantized, [X[:1], X[:32], X[:7]])
    with torch.no_grad():  # fused INT8 kernels round differently from the reference graph: compare predictions
        agree = (compiled(X).argmax(1) == quantized(X).argmax(1)).float().mean().item()
    assert agree >= 0.95
    assert model_accuracy(compiled, X, y) >= model_accuracy(model, X, y) - 0.02
    with pytest.raises(ValueError, match="example"):
        compress.compile_cpu(quantized, [])


def test_qat_trains_then_converts():
    model, X, y = trained_mlp()
    prepared = compress.prepare_qat(model, X[:8])
    losses = compress.train_qat(prepared, X, y, epochs=2, lr=1e-3)
    assert len(losses) == 2 and all(loss == loss for loss in losses)
    quantized = compress.convert_qat(prepared)
    assert model_accuracy(quantized, X, y) >= model_accuracy(model, X, y) - 0.05
    with pytest.raises(ValueError):
        compress.train_qat(prepared, X, y[:5])


# ---------------------------------------------------------------- distillation


def test_distillation_loss_at_t1_is_kl_plus_ce_by_hand():
    torch.manual_seed(0)
    s, t, y = torch.randn(6, 5), torch.randn(6, 5), torch.randint(0, 5, (6,))
    p_t = t.softmax(1)
    kl = (p_t * (p_t.log() - s.log_softmax(1))).sum(1).mean()
    ce = -s.log_softmax(1)[torch.arange(6), y].mean()
    got = distill.distillation_loss(s, t, y, temperature=1.0, alpha=0.3)
    assert got.item() == pytest.approx((0.3 * kl + 0.7 * ce).item(), rel=1e-5)
    ref = F.kl_div(s.log_softmax(1), p_t, reduction="batchmean")
    assert distill.distillation_loss(s, t, None, 1.0, 1.0).item() == pytest.approx(ref.item(), rel=1e-5)


def test_soft_term_scales_with_t_squared_and_unlabelled_rows_are_ignored():
    torch.manual_seed(0)
    s, t, y = torch.randn(6, 5), torch.randn(6, 5), torch.randint(0, 5, (6,))
    for T in (2.0, 4.0):
        kl_T = F.kl_div((s / T).log_softmax(1), (t / T).softmax(1), reduction="batchmean")
        assert distill.distillation_loss(s, t, None, T, 1.0).item() == pytest.approx(T * T * kl_T.item(), rel=1e-5)
    y_part = y.clone()
    y_part[3:] = distill.UNLABELLED
    hard_only = distill.distillation_loss(s, t, y_part, 1.0, 0.0)
    assert hard_only.item() == pytest.approx(F.cross_entropy(s[:3], y[:3]).item(), rel=1e-5)
    assert distill.distillation_loss(s, s, None, 3.0, 1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_distillation_bad_inputs():
    s = torch.randn(4, 3)
    with pytest.raises(ValueError, match="temperature"):
        distill.distillation_loss(s, s, None, temperature=0)
    with pytest.raises(ValueError, match="alpha"):
        distill.distillation_loss(s, s, None, alpha=1.5)
    with pytest.raises(ValueError, match="logits"):
        distill.distillation_loss(s, torch.randn(4, 2))
    with pytest.raises(ValueError, match="equally long"):
        distill.distill(nn.Linear(3, 3), s, s, torch.zeros(2, dtype=torch.long))


def test_distill_moves_the_student_towards_the_teacher():
    teacher, X, y = trained_mlp()
    teacher_logits = distill.logits_of(teacher, X)
    torch.manual_seed(1)
    student = models.MLP(12, (8,), num_classes=4)
    before = distill.kl_to_teacher(distill.logits_of(student, X), teacher_logits)
    unlabelled = torch.full_like(y, distill.UNLABELLED)
    losses = distill.distill(student, teacher_logits, X, unlabelled, distill.DistillConfig(epochs=15, lr=1e-2))
    after_logits = distill.logits_of(student, X)
    assert losses[-1] < losses[0]
    assert distill.kl_to_teacher(after_logits, teacher_logits) < 0.5 * before
    assert distill.agreement(after_logits, teacher_logits) > 0.9
    assert distill.agreement(teacher_logits, teacher_logits) == 1.0


def test_keep_labels_keeps_n_per_class():
    y = torch.arange(40) % 4
    kept = distill.keep_labels(y, 3, seed=0)
    assert ((kept != distill.UNLABELLED) & (kept != y)).sum() == 0, "a kept label must be the true one"
    assert torch.bincount(kept[kept != distill.UNLABELLED], minlength=4).tolist() == [3, 3, 3, 3]
    assert torch.equal(kept, distill.keep_labels(y, 3, seed=0)) and not torch.equal(kept, distill.keep_labels(y, 3, seed=1))
    with pytest.raises(ValueError, match="class"):
        distill.keep_labels(y, 11)
