"""Word-level attributions for the negation-corpus classifiers (the GRU and the bag-of-words model):
Integrated Gradients on the token embeddings, leave-one-word-out occlusion, and LIME's text explainer,
plus the ground truth the corpus gives: which word is the negation that flips the label.

Taught in 13_explainability.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from torch import nn

from labkit.preprocess import tokenize
from labkit.serve.preprocessing import TextPreprocessor

TEXT_METHODS = ("integrated_gradients", "occlusion", "lime")
CONNECTIVES = ("and", "but")


def encode(prep: TextPreprocessor, sentences: list[str]) -> torch.Tensor:
    """(k, 32) int64 token ids."""
    return torch.from_numpy(prep(sentences))


def class_probs(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities (k, 2) in one forward."""
    with torch.no_grad():
        return torch.softmax(model(ids), dim=1)


def leave_one_out(ids: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """(n + 1, T): the sentence, then the sentence with word i removed (later words shift left) for each i."""
    n = int((ids != pad_id).sum())
    rows = [ids]
    for i in range(n):
        kept = torch.cat([ids[:i], ids[i + 1:n]])
        rows.append(torch.cat([kept, torch.full((len(ids) - len(kept),), pad_id, dtype=ids.dtype)]))
    return torch.stack(rows)


def occlusion_scores(model: nn.Module, ids: torch.Tensor, target: int) -> np.ndarray:
    """p(target | sentence) - p(target | sentence without word i), per word: one batched forward of n + 1 rows."""
    probs = class_probs(model, leave_one_out(ids))[:, target]
    return (probs[0] - probs[1:]).numpy()


def ig_scores(model: nn.Module, ids: torch.Tensor, target: int, n_steps: int = 32) -> np.ndarray:
    """Integrated Gradients on the embedding layer (baseline: padding embeddings, all zero), summed per word."""
    return ig_scores_batch(model, ids.view(1, -1), torch.tensor([target]), n_steps)[0]


def ig_scores_batch(model: nn.Module, ids: torch.Tensor, targets: torch.Tensor, n_steps: int = 32) -> list[np.ndarray]:
    """ig_scores for k sentences (k, T) at once: one batched pass per path point instead of k."""
    from captum.attr import LayerIntegratedGradients

    lig = LayerIntegratedGradients(model, model.embedding)
    attr = lig.attribute(ids, baselines=torch.zeros_like(ids), target=targets, n_steps=n_steps)  # (k, T, D)
    per_token = attr.sum(-1).detach().numpy()
    return [row[: int((r != 0).sum())] for row, r in zip(per_token, ids)]


def lime_scores(model: nn.Module, prep: TextPreprocessor, sentence: str, target: int,
                num_samples: int = 150, seed: int = 0) -> np.ndarray:
    """LIME's word weights for `target`, one per word position (a repeated word shares its weight)."""
    from lime.lime_text import LimeTextExplainer

    explainer = LimeTextExplainer(class_names=["negative", "positive"], bow=False, random_state=seed,
                                  split_expression=r"\s+")
    classify = lambda texts: class_probs(model, encode(prep, list(texts))).numpy()  # noqa: E731
    with contextlib.redirect_stderr(io.StringIO()):
        exp = explainer.explain_instance(sentence, classify, labels=(target,), num_features=64,
                                         num_samples=num_samples)
    weights = dict(exp.local_exp[target])  # position in the split sentence -> weight (bow=False)
    words = sentence.split()
    return np.array([weights.get(i, 0.0) for i in range(len(words))])


def word_scores(model: nn.Module, prep: TextPreprocessor, sentence: str, target: int, method: str,
                n_steps: int = 32, lime_samples: int = 150) -> np.ndarray:
    """Attribution per word of `sentence` toward class `target` by `method`."""
    if method not in TEXT_METHODS:
        raise ValueError(f"method must be one of {TEXT_METHODS}; got {method!r}")
    if method == "lime":
        return lime_scores(model, prep, sentence, target, lime_samples)
    ids = encode(prep, [sentence])[0]
    return occlusion_scores(model, ids, target) if method == "occlusion" else ig_scores(model, ids, target, n_steps)


def flipping_negation(sentence: str) -> int | None:
    """Word position of the "not" in the last clause (the one the label depends on), or None."""
    words = tokenize(sentence)
    start = max((i + 1 for i, w in enumerate(words) if w in CONNECTIVES), default=0)
    return next((i for i in range(start, len(words)) if words[i] == "not"), None)


def highlight(sentence: str, scores: np.ndarray) -> str:
    """The sentence with each word followed by its score, e.g. 'not(+0.41)'."""
    return " ".join(f"{w}({s:+.2f})" for w, s in zip(sentence.split(), scores))
