"""Shared fixtures: the real MNIST files (when configured) and small IDX files made here."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import runpy
import struct
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torchvision.datasets import MNIST

from multitask_mnist import load_mnist
from multitask_mnist.data import DATA_ENV_VAR

IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def write_idx(path: Path, array: torch.Tensor, *, magic: int | None = None) -> None:
    """Write a uint8 tensor as an IDX file (magic 0x0000080N, then big-endian dims)."""
    dims = tuple(array.shape)
    magic = (0x08 << 8) | len(dims) if magic is None else magic
    header = struct.pack(f">I{len(dims)}I", magic, *dims)
    path.write_bytes(header + array.to(torch.uint8).contiguous().numpy().tobytes())


def write_fake_mnist(root: Path, n_train: int = 12, n_test: int = 6, seed: int = 0) -> Path:
    """Write a tiny, well-formed MNIST in torchvision's layout under ``root``."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = IDX_NAMES[split]
        write_idx(raw / images, torch.randint(0, 256, (n, 28, 28), generator=g))
        write_idx(raw / labels, torch.arange(n) % 10)
    return root


@pytest.fixture
def fake_mnist_root(tmp_path: Path) -> Path:
    return write_fake_mnist(tmp_path)


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """The real MNIST folder from $MULTITASK_MNIST_DATA; a failure under CI=true if absent."""
    value = os.environ.get(DATA_ENV_VAR)
    raw = Path(value or "data") / "MNIST" / "raw"
    complete = all((raw / n).is_file() for pair in IDX_NAMES.values() for n in pair)
    if not complete:
        message = f"real MNIST files not found under {raw}; set ${DATA_ENV_VAR}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return raw.parent.parent


@pytest.fixture(scope="session")
def mnist_train(mnist_root: Path) -> MNIST:
    return load_mnist(mnist_root, train=True)


@pytest.fixture(scope="session")
def mnist_test(mnist_root: Path) -> MNIST:
    return load_mnist(mnist_root, train=False)


class SyntheticDigits(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """Ten fixed 28x28 patterns plus noise, labelled by pattern: learnable in a few steps.

    Exposes uint8 ``data`` and int64 ``targets`` like torchvision's MNIST, so
    :class:`AugmentedDigitDataset` takes its tensor path.
    """

    def __init__(self, n: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(1234)
        templates = torch.randint(0, 2, (10, 28, 28), generator=g) * 200
        g.manual_seed(seed)
        self.targets = torch.randint(0, 10, (n,), generator=g)
        noise = torch.randint(0, 56, (n, 28, 28), generator=g)
        self.data = (templates[self.targets] + noise).to(torch.uint8)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.data[index], int(self.targets[index])


def interrupted_run_command(out: Path, *extra: str, launcher: tuple[str, ...] = ()) -> list[str]:
    """``multitask-mnist train`` for 3 epochs of 2,000 images in batches of 50 (40 steps an
    epoch), into ``out``: the run the kill -9 and preemption tests interrupt and resume."""
    return [
        *(launcher or (sys.executable,)),
        "-m",
        "multitask_mnist",
        "train",
        "--epochs",
        "3",
        "--limit",
        "2000",
        "--batch-size",
        "50",
        "--output-dir",
        str(out),
        "--no-progress",
        *extra,
    ]


@pytest.fixture(scope="session")
def trained_checkpoint(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``last.pt`` of the documented network trained for one epoch on 20,000 real images:
    good enough (96.6% on the test set when measured) for the demo and export tests to
    check answers, quick enough (seconds) to train in the session."""
    from torch.utils.data import Subset

    from multitask_mnist import AugmentedDigitDataset, Trainer, presets

    out = tmp_path_factory.mktemp("trained")
    torch.manual_seed(0)
    train = AugmentedDigitDataset(Subset(load_mnist(mnist_root, train=True), range(20_000)))
    trainer = Trainer(presets.mnist_sum(), epochs=1, output_dir=out, progress=False, seed=0)
    trainer.fit(train)
    trainer.close()
    return out / "last.pt"


@dataclass(frozen=True)
class Completed:
    """What a program run in this process left: its exit status and its output."""

    returncode: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def environment(changes: Mapping[str, str | None]) -> Iterator[None]:
    """``os.environ`` with ``changes`` (``None`` removes a variable) inside the block."""
    saved = {name: os.environ.get(name) for name in changes}
    try:
        for name, value in changes.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_in_process(
    main: Callable[[list[str]], int | None],
    argv: Sequence[str],
    env: Mapping[str, str | None] | None = None,
) -> Completed:
    """Run a program's ``main(argv)`` here, as a subprocess would run it, in a fraction of
    the time (no second interpreter importing torch): its exit status (``sys.exit``
    included) and what it wrote to stdout and stderr."""
    library = logging.getLogger("multitask_mnist")  # a program points it at its streams
    saved = (list(library.handlers), library.level, library.propagate)
    with (
        environment({"CI": "true", **(env or {})}),
        contextlib.redirect_stdout(io.StringIO()) as out,
        contextlib.redirect_stderr(io.StringIO()) as err,
    ):
        try:
            code = main(list(argv))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        finally:
            library.handlers, library.level, library.propagate = saved
    return Completed(int(code or 0), out.getvalue(), err.getvalue())


def run_script(path: Path, *args: str, env: Mapping[str, str | None] | None = None) -> Completed:
    """Run the script at ``path`` (an example) with ``args`` in this process, as
    ``python path args...`` would."""

    def main(argv: list[str]) -> int | None:
        saved = sys.argv
        sys.argv = [str(path), *argv]
        try:
            runpy.run_path(str(path), run_name="__main__")
        finally:
            sys.argv = saved
        return 0

    return run_in_process(main, args, env)
