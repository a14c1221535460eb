"""Run by tests/training/test_distributed.py under torchrun: a gradient method on 2 ranks."""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path

import torch

from multitask_mnist import AugmentedDigitDataset, distributed, presets
from multitask_mnist.training import Trainer
from tests.conftest import SyntheticDigits


def _record_threads(path: Path) -> None:
    path.write_text(str(len(os.listdir("/proc/self/task"))))


def main(out: Path, methods: str) -> None:
    """Train with each of the comma-separated ``methods`` in turn, saving each's weights.

    It never calls ``distributed.cleanup()``: the group is left at exit, and the threads
    still alive then are written to ``threads-rank{r}.txt`` (this handler, registered
    before the Trainer joins the group, runs after the Trainer's own).
    """
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    atexit.register(_record_threads, out / f"threads-rank{rank}.txt")
    for method in methods.split(","):
        torch.manual_seed(0)
        trainer = Trainer(
            presets.mnist_sum(fusion="expectation"),
            method=method,
            epochs=1,
            batch_size=16,
            device="cpu",
            precision="fp32",
            progress=False,
            seed=0,
        )
        trainer.fit(AugmentedDigitDataset(SyntheticDigits(64)))
        state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        torch.save(state, out / f"{method}-rank{distributed.rank()}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
