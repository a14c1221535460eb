"""What a run records, epoch by epoch."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from multitask_mnist.checkpoint import write_text_atomic

__all__ = ["History"]


@dataclass
class History:
    """The metrics of each epoch of a run, oldest first.

    Attributes:
        epochs: One dict per epoch: ``epoch``, ``lr``, ``time_s``, ``train_*`` and,
            with validation data, ``val_*`` metrics.
        stop_reason: Why training stopped early, or ``None``.

    Example:
        >>> history = History([{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "train_loss": 0.2}])
        >>> history.metric("train_loss")
        [0.5, 0.2]
    """

    epochs: list[dict[str, float]] = field(default_factory=list)
    stop_reason: str | None = None

    def metric(self, key: str) -> list[float]:
        """The values of one metric over the epochs, e.g. ``history.metric("train_loss")``.

        Args:
            key: A metric name.

        Returns:
            Its value in each epoch that recorded it.
        """
        return [row[key] for row in self.epochs if key in row]

    def write_csv(self, path: str | Path) -> None:
        """Write one row per epoch, with a header naming every metric seen.

        Args:
            path: The CSV file to write.
        """
        keys: list[str] = []
        for row in self.epochs:
            keys += [k for k in row if k not in keys]
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.epochs)
        write_text_atomic(Path(path), buffer.getvalue())
