"""PNG plots of a run, drawn when matplotlib (the ``plot`` extra) is installed."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from multitask_mnist.training.history import History

__all__ = ["save_confusion", "save_curves", "smooth"]

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


def smooth(values: Sequence[float], weight: float | None = None) -> list[float]:
    """The exponential moving average of ``values``, debiased so it starts at the first.

    ``weight`` is that of the newest value; ``None`` scales it to the run, about 20
    values' worth of memory, between 0.01 and 0.3.

    Example:
        >>> [round(v, 3) for v in smooth([1.0, 1.0, 4.0], weight=0.5)]
        [1.0, 1.0, 2.714]
    """
    if weight is None:
        weight = min(max(20 / max(len(values), 1), 0.01), 0.3)
    smoothed, average, total = [], 0.0, 0.0
    for value in values:
        average = (1 - weight) * average + weight * value
        total = (1 - weight) * total + weight
        smoothed.append(average / total)
    return smoothed


def save_curves(
    history: History,
    folder: Path,
    steps: tuple[Sequence[float], Sequence[float]] | None = None,
) -> list[Path]:
    """Write ``loss.png`` (each step's training loss, faint, and its smoothed curve,
    with each epoch's train and validation loss), ``accuracy.png`` (every task's
    accuracy per epoch), with gradient diagnostics ``gradients.png``, and with a
    soft-sharing block ``gates.png`` (each task's mean gate weight on each expert, or
    its mean attention mask at each stage, per epoch); the epoch axis has whole-number
    ticks.

    Args:
        history: The run's history.
        folder: Where to write.
        steps: Each step's position in epochs and its loss (from
            :class:`~multitask_mnist.training.RunFiles`), or ``None``.

    Returns:
        The files written; none without matplotlib.
    """
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
    gates = tuple(key for key in seen if key.startswith("gate_"))
    written = []
    for name, keys, ylabel in (
        ("loss.png", ("train_loss", "val_loss"), "loss"),
        ("accuracy.png", accuracies, "accuracy (%)"),
        ("gradients.png", ("grad_cosine", "grad_norm_ratio"), "task gradients"),
        ("gates.png", gates, "mean gate weight"),
    ):
        if not any(history.metric(key) for key in keys):
            continue  # no curve to draw (gradients: no gradient method)
        fig = _new_figure((6, 4))
        if fig is None:
            break
        ax = fig.subplots()
        if name == "loss.png" and steps is not None and len(steps[1]):
            positions, losses = steps
            ax.plot(positions, losses, color="C0", alpha=0.25, linewidth=0.8)
            ax.plot(positions, smooth(losses), color="C0", label="train_loss (each step)")
        for i, key in enumerate(keys, start=1):
            values = history.metric(key)
            if values:
                x = epochs[-len(values) :]
                ax.plot(x, values, marker="o", linestyle="--", color=f"C{i % 10}", label=key)
        ax.set_xlim(0, max(epochs) * 1.03)  # from the start: one epoch still spans an axis
        ax.xaxis.set_major_locator(_whole_numbers())
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(folder / name, dpi=100)
        written.append(folder / name)
    return written


def _whole_numbers() -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


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
