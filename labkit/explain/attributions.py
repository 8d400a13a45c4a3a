"""Image attributions over one API: attribute(model, x, target, method) -> a map shaped like x.

Captum's Saliency, IntegratedGradients, Occlusion and GradientShap, SHAP's GradientExplainer and LIME's
superpixel explainer, plus an edge detector that ignores the model (the control the randomization check
must expose). Every method explains a class *logit* of a model in eval mode, for the target given.
Taught in 13_explainability.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

IMAGE_METHODS = ("saliency", "integrated_gradients", "gradient_shap", "occlusion", "shap_gradient", "lime", "edges")
MODEL_FREE = ("edges",)  # depends on the input only: a sanity check must flag it


@dataclass(frozen=True)
class MethodConfig:
    """Knobs that trade cost for accuracy; defaults suit 8x8 digits and 32x32 shapes on 2 cores."""
    ig_steps: int = 32            # IG path points: median completeness error < 1% from ~16 steps on the digits CNN
    shap_samples: int = 32        # GradientShap / SHAP gradient samples per input
    background: int = 16          # reference images for GradientShap and SHAP
    occlusion_patch: int = 2      # square patch side (pixels); 2 on 8x8 digits, 4 on 32x32 shapes
    lime_samples: int = 150       # perturbed images per LIME explanation
    seed: int = 0


def attribute(model: nn.Module, x: torch.Tensor, target: torch.Tensor, method: str,
              background: torch.Tensor | None = None, config: MethodConfig = MethodConfig()) -> torch.Tensor:
    """Attributions (N, C, H, W) of `method` for class target (N,) of images x (N, C, H, W)."""
    if method not in IMAGE_METHODS:
        raise ValueError(f"method must be one of {IMAGE_METHODS}; got {method!r}")
    if model.training:
        raise ValueError("explain a model in eval mode: dropout or batch-norm updates change what is explained")
    torch.manual_seed(config.seed)
    x, target = x.detach().float(), torch.as_tensor(target).long()
    background = background if background is not None else torch.zeros(1, *x.shape[1:])
    return _METHODS[method](model, x, target, background, config).detach()


def _saliency(model, x, target, background, config) -> torch.Tensor:
    from captum.attr import Saliency

    return Saliency(model).attribute(x.requires_grad_(), target=target, abs=True)


def _integrated_gradients(model, x, target, background, config) -> torch.Tensor:
    from captum.attr import IntegratedGradients

    baseline = torch.zeros_like(x)  # black image: "no ink" on digits and shapes
    return IntegratedGradients(model).attribute(x, baselines=baseline, target=target, n_steps=config.ig_steps,
                                                internal_batch_size=4096)


def _gradient_shap(model, x, target, background, config) -> torch.Tensor:
    from captum.attr import GradientShap

    refs = background[: config.background]
    return GradientShap(model).attribute(x, baselines=refs, target=target, n_samples=config.shap_samples,
                                         stdevs=0.05)


def _occlusion(model, x, target, background, config) -> torch.Tensor:
    from captum.attr import Occlusion

    p, c = config.occlusion_patch, x.shape[1]
    return Occlusion(model).attribute(x, sliding_window_shapes=(c, p, p), strides=(c, p, p), baselines=0.0,
                                      target=target, perturbations_per_eval=64)


class _OneLogit(nn.Module):
    """model restricted to one class logit (N, 1): SHAP then differentiates one output, not all K."""

    def __init__(self, model: nn.Module, cls: int):
        super().__init__()
        self.model, self.cls = model, cls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, self.cls:self.cls + 1]


def _shap_gradient(model, x, target, background, config) -> torch.Tensor:
    import shap

    out = torch.zeros_like(x)
    for cls in target.unique().tolist():  # one explainer per class: ~K times fewer backward passes
        rows = (target == cls).nonzero().squeeze(1)
        explainer = shap.GradientExplainer(_OneLogit(model, cls), background[: config.background])
        values = explainer.shap_values(x[rows], nsamples=config.shap_samples, rseed=config.seed)
        values = np.asarray(values[0] if isinstance(values, list) else values)
        out[rows] = torch.from_numpy(values.reshape(x[rows].shape).astype(np.float32))
    return out


def _lime(model, x, target, background, config) -> torch.Tensor:
    out = torch.zeros_like(x)
    for i in range(len(x)):
        out[i] = lime_image_map(model, x[i], int(target[i]), config)
    return out


def grid_segments(height: int, width: int, patch: int) -> np.ndarray:
    """(H, W) superpixel labels: a grid of patch x patch squares (8x8 digits are too small for SLIC)."""
    rows, cols = np.arange(height)[:, None] // patch, np.arange(width)[None, :] // patch
    return rows * ((width + patch - 1) // patch) + cols


@contextlib.contextmanager
def _no_progress_bar(module):
    """LIME draws a tqdm bar (a widget in Jupyter) per image and has no switch for it: skip it, then restore."""
    saved = module.tqdm
    module.tqdm = lambda iterable, **_: iterable
    try:
        yield
    finally:
        module.tqdm = saved


def lime_image_map(model: nn.Module, image: torch.Tensor, target: int, config: MethodConfig) -> torch.Tensor:
    """LIME on one (C, H, W) image: superpixel weights for `target` painted back onto the pixels."""
    from lime import lime_image

    c, h, w = image.shape
    segments = grid_segments(h, w, config.occlusion_patch)
    hwc = image.permute(1, 2, 0).numpy().astype(np.float64)
    hwc = np.repeat(hwc, 3, axis=2) if c == 1 else hwc  # LIME wants RGB

    def classify(batch: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(batch[..., :c].astype(np.float32)).permute(0, 3, 1, 2)  # (B, C, H, W)
        with torch.no_grad():
            return torch.softmax(model(t), dim=1).numpy()

    with _no_progress_bar(lime_image):
        exp = lime_image.LimeImageExplainer(random_state=config.seed).explain_instance(
            hwc, classify, labels=(target,), top_labels=None, hide_color=0.0, num_samples=config.lime_samples,
            batch_size=256, segmentation_fn=lambda _: segments, random_seed=config.seed)
    weights = dict(exp.local_exp[target])
    painted = np.vectorize(lambda s: weights.get(s, 0.0))(segments).astype(np.float32)  # (H, W)
    return torch.from_numpy(painted).expand(c, h, w).clone()


def _edges(model, x, target, background, config) -> torch.Tensor:
    """Sobel gradient magnitude of the input: looks like a plausible map and never reads the model."""
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]).view(1, 1, 3, 3)
    gray = x.mean(dim=1, keepdim=True)                                  # (N, 1, H, W)
    gx = nn.functional.conv2d(gray, kx, padding=1)
    gy = nn.functional.conv2d(gray, kx.transpose(2, 3), padding=1)
    return (gx ** 2 + gy ** 2).sqrt().expand_as(x).clone()


_METHODS = {"saliency": _saliency, "integrated_gradients": _integrated_gradients, "gradient_shap": _gradient_shap,
            "occlusion": _occlusion, "shap_gradient": _shap_gradient, "lime": _lime, "edges": _edges}


def logits_of(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The target class logit (N,) of each input."""
    with torch.no_grad():
        return model(x).gather(1, torch.as_tensor(target).long().view(-1, 1)).squeeze(1)
