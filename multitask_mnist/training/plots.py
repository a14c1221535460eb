"""PNG plots of a run, drawn when matplotlib (the ``plot`` extra) is installed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import Tensor

from multitask_mnist.training.history import History

__all__ = ["save_confusion", "save_curves"]

logger = logging.getLogger(__name__)


def _new_figure(size: tuple[float, float]) -> Any:
    """A matplotlib Figure that touches no global state (no pyplot, no backend switch),
    or ``None`` without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        logger.debug("matplotlib is not installed; no plots are drawn")
        return None
    return Figure(figsize=size)


def save_curves(history: History, folder: Path) -> list[Path]:
    """Write ``loss.png`` and ``accuracy.png`` of the train (and validation) metrics:
    the total loss, and every task's accuracy."""
    if not history.epochs:
        return []
    epochs = history.metric("epoch")
    seen = dict.fromkeys(key for row in history.epochs for key in row)
    accuracies = tuple(
        key
        for split in ("train_", "val_")
        for key in seen
        if key.startswith(split)
        and key.endswith("_accuracy")
        and "_given_" not in key
        and key != f"{split}joint_accuracy"
    )
    written = []
    for name, keys, ylabel in (
        ("loss.png", ("train_loss", "val_loss"), "loss"),
        ("accuracy.png", accuracies, "accuracy (%)"),
        ("gradients.png", ("grad_cosine", "grad_norm_ratio"), "task gradients"),
    ):
        if not any(history.metric(key) for key in keys):
            continue  # no curve to draw (gradients: no gradient method)
        fig = _new_figure((6, 4))
        if fig is None:
            break
        ax = fig.subplots()
        for key in keys:
            values = history.metric(key)
            if values:
                ax.plot(epochs[-len(values) :], values, marker="o", label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(folder / name, dpi=100)
        written.append(folder / name)
    return written


def save_confusion(confusion: Tensor, path: Path, task: str = "digit") -> Path | None:
    """Write a confusion matrix to ``path``: rows are true classes, columns predicted."""
    fig = _new_figure((6, 5.5))
    if fig is None:
        return None
    counts = confusion.tolist()
    ax = fig.subplots()
    image = ax.imshow(confusion.float().log1p().numpy(), cmap="Blues")
    for i, row in enumerate(counts):
        for j, count in enumerate(row):
            if count:
                color = "white" if i == j else "black"
                ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(len(counts)))
    ax.set_yticks(range(len(counts)))
    ax.set_xlabel(f"predicted {task}")
    ax.set_ylabel(f"true {task}")
    ax.set_title(f"Test: {task}")
    fig.colorbar(image, ax=ax, label="log(1 + count)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
