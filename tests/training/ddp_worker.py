"""Run by tests/training/test_distributed.py under torchrun: each rank reports what it saw."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from multitask_mnist import AugmentedDigitDataset, distributed, presets
from multitask_mnist.training import GradientConflict, Trainer
from tests.conftest import SyntheticDigits


def _total(value: Any) -> float:
    """A tensor's sum, or the sum over a dict of tensors (a module's extra state)."""
    if isinstance(value, dict):
        return sum(_total(v) for v in value.values())
    return float(value.double().sum().item())


def threads() -> int:
    """This process's operating-system threads (gloo runs its own)."""
    return len(os.listdir("/proc/self/task"))


def train(out: Path, strategy: str) -> tuple[Trainer, dict[str, Any]]:
    """Train with ``strategy``; the trainer and what this rank saw."""
    seed = 0
    torch.manual_seed(seed)
    trainer = Trainer(
        presets.mnist_sum(fusion="expectation"),  # the sum reaches the trunk: two gradients
        method=strategy,
        epochs=3,
        batch_size=16,
        device="cpu",
        progress=False,
        seed=seed,
        output_dir=out / strategy,
        callbacks=[GradientConflict(every=3)],  # the gradient probe, across processes
    )
    history = trainer.fit(AugmentedDigitDataset(SyntheticDigits(600)))
    metrics = trainer.evaluate(AugmentedDigitDataset(SyntheticDigits(101, seed=1)))
    trainer.close()
    return trainer, {
        "world": distributed.world_size(),
        "history": [{k: v for k, v in r.items() if k != "time_s"} for r in history.epochs],
        "evaluate": metrics,
        "weights": {k: v.double().sum().item() for k, v in trainer.model.state_dict().items()},
        "loss_state": {k: _total(v) for k, v in trainer.method.state_dict().items()},
    }


def main(out: Path, strategies: str) -> None:
    """Train with each of the comma-separated ``strategies`` in turn (one launch for all);
    write ``{strategy}-rank{r}.json`` and ``threads-rank{r}.json``."""
    torch.set_num_threads(1)  # no intra-op pool threads to count
    before = threads()
    trainers = []  # kept alive: a live Trainer must not hold the process group
    for strategy in strategies.split(","):
        trainer, report = train(out, strategy)
        trainers.append(trainer)
        (out / f"{strategy}-rank{distributed.rank()}.json").write_text(json.dumps(report))
    rank = distributed.rank()
    during = threads()
    distributed.cleanup()
    counts = {"before": before, "during": during, "after": threads()}
    (out / f"threads-rank{rank}.json").write_text(json.dumps(counts))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
