"""Small plotting helpers shared by the notebooks (matplotlib, nothing shown at import): training, images, load."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from labkit.serve.records import LoadResult


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


def plot_latency_vs_load(tables: dict, slo_ms: float | None = None, ax=None):
    """p50 (dashed) and p99 (solid) latency against offered load, one colour per configuration."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    for name, df in tables.items():
        x = df["offered_rps"] if "offered_rps" in df else df.index
        line, = ax.plot(x, df["p99_ms"], "o-", label=f"{name} p99")
        ax.plot(x, df["p50_ms"], "--", color=line.get_color(), alpha=0.6, label=f"{name} p50")
    if slo_ms is not None:
        ax.axhline(slo_ms, color="gray", lw=1, ls=":", label=f"SLO {slo_ms:g} ms")
    ax.set_yscale("log"); ax.set_xlabel("offered load (req/s)"); ax.set_ylabel("latency (ms)")
    ax.legend(fontsize=7)
    return ax


def plot_latency_over_time(result: LoadResult, ax=None):
    """Each request's latency at its intended send time, coloured by outcome."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    df = result.to_frame()
    for outcome, group in df.groupby("outcome"):
        ax.plot(group["intended_s"], group["latency_ms"], ".", ms=3, label=f"{outcome} ({len(group)})")
    ax.set_yscale("log"); ax.set_xlabel("intended send time (s)"); ax.set_ylabel("latency (ms)")
    ax.legend(fontsize=7)
    return ax


def plot_goodput_cliff(table, slo_ms: float):
    """Goodput / capacity and admitted p99 against offered load, one line per variant (labkit.serve.overload)."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, rows in table.groupby("variant", sort=False):
        left.plot(rows["offered_x"], rows["goodput_x"], marker="o", label=name)
        right.plot(rows["offered_x"], rows["p99_ms"], marker="o", label=name)
    left.set(xlabel="offered load / capacity", ylabel="goodput / capacity", title=f"goodput (answers within "
             f"{slo_ms:g} ms)", ylim=(0, None))
    right.axhline(slo_ms, color="grey", ls="--", lw=1, label="SLO")
    right.set(xlabel="offered load / capacity", ylabel="ms", yscale="log", title="admitted requests: p99 latency")
    left.legend(fontsize=8)
    fig.tight_layout()
    return fig
