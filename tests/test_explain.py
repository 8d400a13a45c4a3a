"""labkit.explain: every method checked against the property it claims, on the course's own small models."""
import numpy as np
import pytest
import torch

from labkit.explain import attributions as A
from labkit.explain import checks as C
from labkit.explain import tabular as T
from labkit.explain import text as X
from labkit.explain.cost import ForwardCounter, explanation_cost
from labkit.explain.trained import PerTokenBagOfWords, bag_of_words, digits_cnn, digits_test, text_preprocessor


@pytest.fixture(scope="module")
def cnn():
    model, acc = digits_cnn(epochs=4)
    assert acc > 0.85
    X_test, _ = digits_test()
    x = X_test[:120]                         # >= 100 test inputs for the faithfulness check
    return model, x, model(x).argmax(1).detach(), X_test[-16:]


@pytest.mark.parametrize("method", A.IMAGE_METHODS)
def test_every_image_method_returns_a_finite_map_shaped_like_the_input(cnn, method):
    model, x, target, bg = cnn
    a = A.attribute(model, x[:3], target[:3], method, background=bg, config=A.MethodConfig(lime_samples=60))
    assert a.shape == x[:3].shape and torch.isfinite(a).all() and a.abs().sum() > 0


def test_attribute_refuses_a_model_in_training_mode(cnn):
    model, x, target, _ = cnn
    model.train()
    try:
        with pytest.raises(ValueError, match="eval mode"):
            A.attribute(model, x[:2], target[:2], "saliency")
    finally:
        model.eval()


def test_ig_completeness_error_is_below_one_percent_and_shrinks_with_steps(cnn):
    model, x, target, _ = cnn
    errors = C.completeness_vs_steps(model, x[:100], target[:100], [4, 32])
    assert errors[32] < 0.01 and errors[32] < errors[4]


def test_deletion_of_ig_top_pixels_beats_random_order_over_100_inputs(cnn):
    model, x, target, _ = cnn
    ig = A.attribute(model, x, target, "integrated_gradients")
    deletion = C.area_under(C.perturbation_curve(model, x, target, C.order_from(ig)))
    random = C.area_under(C.perturbation_curve(model, x, target, C.random_order(len(x), 64)))
    insertion = C.area_under(C.perturbation_curve(model, x, target, C.order_from(ig), mode="insertion"))
    assert deletion <= 0.7 * random and insertion > random


def test_perturbation_curve_ends_at_the_baseline_and_starts_at_the_input(cnn):
    model, x, target, _ = cnn
    curves = C.perturbation_curve(model, x[:5], target[:5], C.random_order(5, 64), steps=4)
    p_x = torch.softmax(model(x[:5]), 1)[torch.arange(5), target[:5]].detach().numpy()
    p_0 = torch.softmax(model(torch.zeros_like(x[:5])), 1)[torch.arange(5), target[:5]].detach().numpy()
    assert np.allclose(curves[:, 0], p_x, atol=1e-5) and np.allclose(curves[:, -1], p_0, atol=1e-5)


def test_randomization_check_flags_the_model_free_edge_detector_and_passes_saliency(cnn):
    model, x, target, _ = cnn
    edges = C.randomization_check(model, x[:20], target[:20], lambda m, xx, t: A.attribute(m, xx, t, "edges"))
    saliency = C.randomization_check(model, x[:20], target[:20], lambda m, xx, t: A.attribute(m, xx, t, "saliency"))
    assert list(edges) == ["head.4", "head.1", "features.3", "features.0"]  # cascading, top layer first
    assert min(edges.values()) > 0.99 and saliency["features.0"] < 0.5


def test_randomized_layers_leave_the_original_model_untouched(cnn):
    model, x, _, _ = cnn
    before = model(x[:4]).detach()
    last = list(C.randomized_layers(model))[-1][1]
    assert torch.equal(model(x[:4]).detach(), before) and not torch.allclose(last(x[:4]), before)


def test_forward_counter_counts_calls_and_rows(cnn):
    model, x, target, _ = cnn
    cost = explanation_cost(model, lambda: A.attribute(model, x[:1], target[:1], "occlusion"), repeats=1)
    assert cost["rows forwarded"] == 1 + 16 and cost["ms"] > 0    # the input + 16 patches of 2x2 on 8x8
    with ForwardCounter(model) as counter:
        model(x[:7])
    assert (counter.calls, counter.rows) == (1, 7)


# ---------------------------------------------------------------- text

def test_leave_one_out_removes_each_word_once():
    ids = torch.tensor([5, 6, 7, 0, 0])
    rows = X.leave_one_out(ids)
    assert rows.tolist() == [[5, 6, 7, 0, 0], [6, 7, 0, 0, 0], [5, 7, 0, 0, 0], [5, 6, 0, 0, 0]]


def test_flipping_negation_is_the_not_of_the_last_clause():
    assert X.flipping_negation("the food was not good") == 3
    assert X.flipping_negation("the food was not good but the room is nice") is None
    assert X.flipping_negation("the food was good and the room is not bad") == 8


def test_per_token_bag_of_words_equals_the_model_it_wraps():
    bow, _ = bag_of_words(epochs=1)
    ids = X.encode(text_preprocessor(), ["the food was not good", "the view is bad but the room was nice"])
    assert torch.allclose(PerTokenBagOfWords(bow)(ids), bow(ids), atol=1e-6)


def test_text_ig_completeness_on_the_bag_of_words_model():
    model = PerTokenBagOfWords(bag_of_words(epochs=1)[0])
    ids = X.encode(text_preprocessor(), ["the food was not very good"])
    scores = X.ig_scores(model, ids[0], target=1, n_steps=16)
    with torch.no_grad():
        gap = model(ids)[0, 1] - model(torch.zeros_like(ids))[0, 1]
    assert len(scores) == 6 and abs(scores.sum() - float(gap)) < 1e-3 * max(1.0, abs(float(gap)))


@pytest.mark.parametrize("method", X.TEXT_METHODS)
def test_word_scores_one_per_word(method):
    model = PerTokenBagOfWords(bag_of_words(epochs=1)[0])
    s = "the plot was dull and the ending is not really superb"
    scores = X.word_scores(model, text_preprocessor(), s, 1, method, n_steps=8, lime_samples=60)
    assert scores.shape == (len(s.split()),) and np.isfinite(scores).all()
    assert "not(" in X.highlight(s, scores)


def test_top_k_hit_rate_ranks_by_magnitude():
    assert C.top_k_hit_rate([np.array([0.1, -0.9, 0.2]), np.array([0.5, 0.1, 0.0])], [1, 2]) == 0.5


def test_explain_bodies_keep_the_inputs_and_the_mix_share_is_checked():
    from labkit.explain.load import explain_bodies, mixed_load
    assert explain_bodies([b'{"inputs": ["a b"], "deadline_ms": 5}']) == [b'{"inputs": ["a b"]}']
    with pytest.raises(ValueError, match="explain_share"):
        mixed_load("http://127.0.0.1:9", [b"{}"], rate=10, explain_share=1.0, duration_s=1)


# ---------------------------------------------------------------- tabular

@pytest.fixture(scope="module")
def table():
    t = T.planted_table()
    return t, T.fit_model(t)


def test_kernel_shap_local_accuracy_and_the_planted_features(table):
    t, model = table
    values, expected = T.kernel_shap(model.predict_proba, t.X_train, t.X_test[:15], nsamples=128, background=10)
    assert T.local_accuracy_error(model.predict_proba, t.X_test[:15], values, expected).max() < 1e-3
    imp = T.importance_table(model, t, values, repeats=3)
    assert imp.index[0] == T.LEAK and imp.loc[T.LEAK, "rank (permutation)"] == 1
    assert imp.loc[T.NOISE, "mean |SHAP|"] < 0.2 * imp.loc[T.LEAK, "mean |SHAP|"]
    assert abs(imp.loc[T.NOISE, "permutation"]) < 0.2 * imp.loc[T.LEAK, "permutation"]


def test_lime_tabular_puts_the_leak_first(table):
    t, model = table
    w = T.lime_tabular_weights(model, t, t.X_test[0], num_samples=300)
    assert set(w.index) == set(t.features) and w.abs().idxmax() == T.LEAK
