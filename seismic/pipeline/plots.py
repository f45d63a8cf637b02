"""Figures logged with every training run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure


def confusion_matrix_figure(confusion: np.ndarray, class_names: tuple[str, ...] | list[str]) -> Figure:
    """Row-normalised confusion matrix (recall per true class) with the raw counts written in each cell."""
    counts = np.asarray(confusion, dtype=np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    recall = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.1 * n + 2.5, 1.0 * n + 1.8), layout="constrained")
    image = ax.imshow(recall, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{counts[i, j]}\n{recall[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if recall[i, j] > 0.6 else "black",
            )
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted facies")
    ax.set_ylabel("true facies")
    ax.set_title("test confusion matrix (count, row fraction)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return fig


def section_figure(
    amplitudes: np.ndarray,
    true_labels: np.ndarray,
    predicted: np.ndarray,
    class_names: tuple[str, ...] | list[str],
    dt_ms: float,
    title: str,
) -> Figure:
    """One inline ``[n_xl, n_t]``: amplitudes, true facies and predicted facies side by side."""
    n = len(class_names)
    cmap = ListedColormap(plt.get_cmap("tab10").colors[:n])
    norm = BoundaryNorm(np.arange(n + 1) - 0.5, n)
    extent = (0, amplitudes.shape[0], amplitudes.shape[1] * dt_ms, 0)
    clip = float(np.percentile(np.abs(amplitudes), 99)) or 1.0
    accuracy = float(np.mean(true_labels == predicted))
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.5), sharey=True, layout="constrained")
    axes[0].imshow(amplitudes.T, cmap="gray", vmin=-clip, vmax=clip, aspect="auto", extent=extent)
    axes[0].set_title("amplitudes")
    axes[1].imshow(true_labels.T, cmap=cmap, norm=norm, aspect="auto", extent=extent, interpolation="nearest")
    axes[1].set_title("true facies")
    image = axes[2].imshow(
        predicted.T, cmap=cmap, norm=norm, aspect="auto", extent=extent, interpolation="nearest"
    )
    axes[2].set_title(f"predicted facies (pixel accuracy {accuracy:.3f})")
    axes[0].set_ylabel("time (ms)")
    for ax in axes:
        ax.set_xlabel("crossline (position)")
    bar = fig.colorbar(image, ax=axes, ticks=range(n), fraction=0.03)
    bar.ax.set_yticklabels(class_names)
    fig.suptitle(title)
    return fig
