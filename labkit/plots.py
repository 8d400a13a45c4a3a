"""Small plotting helpers shared by the notebooks (matplotlib, nothing shown at import)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def plot_history(histories: dict[str, list[dict]], metrics: Sequence[str] = ("train_loss", "val_loss", "val_acc"),
                 title: str = ""):
    """One panel per metric, one line per run (the rows returned by labkit.train.fit)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for name, history in histories.items():
            ax.plot([h["epoch"] + 1 for h in history], [h[metric] for h in history], label=name)
        ax.set_xlabel("epoch"); ax.set_title(metric)
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confusion(cm: np.ndarray, class_names: Sequence[str] | None = None, title: str = "", ax=None):
    """Heat map of a confusion matrix (rows true, columns predicted) with counts in the cells."""
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.45 * len(cm) + 2, 0.45 * len(cm) + 1.5))
    ax.imshow(cm, cmap="Blues")
    names = class_names or [str(i) for i in range(len(cm))]
    ax.set_xticks(range(len(cm)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(cm)), names, fontsize=7)
    for (i, j), v in np.ndenumerate(cm):
        if v:
            ax.text(j, i, int(v), ha="center", va="center", fontsize=6,
                    color="white" if v > cm.max() / 2 else "black")
    ax.set_xlabel("predicted"); ax.set_ylabel("true"); ax.set_title(title)
    return ax


def show_images(X, labels: Sequence[str], n: int = 12, title: str = ""):
    """A row of images from a (N, C, H, W) tensor in [0, 1] with their labels."""
    import matplotlib.pyplot as plt

    n = min(n, len(X))
    fig, axes = plt.subplots(1, n, figsize=(1.2 * n, 1.6), squeeze=False)
    for ax, img, label in zip(axes[0], X[:n], labels[:n]):
        img = img.permute(1, 2, 0).squeeze(-1).numpy()
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(str(label), fontsize=7); ax.axis("off")
    fig.suptitle(title)
    return fig
