"""One cell of a comparison: a benchmark, a method (or a single-task baseline) and a
seed, trained as an ordinary Trainer run in a folder of its own.

A cell's folder holds the run's usual files (``last.pt``, ``best.pt``, ``metrics.json``,
``config.yaml``, ...) and, once the cell has finished, ``result.json``: what the
comparison reads. Running a cell whose ``result.json`` is there does nothing; running
one that was interrupted resumes it from its ``last.pt``.

Selection without peeking (``protocol="heldout"``, the default): the checkpoint kept is
the epoch whose mean validation metric over the cell's tasks was best, on data held
out of the training set; the test split is evaluated once, on that checkpoint. The
papers' protocol (``protocol="papers"``) trains on the whole training set, scores the
test split after every epoch and reports the best of those epochs, as Sener and
Koltun's code and LibMTL without a validation set do: it exists to compare with
published rows, and is labelled so wherever it appears.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import Dataset, Subset

from multitask_mnist import presets
from multitask_mnist.checkpoint import load_checkpoint, load_model_state, write_text_atomic
from multitask_mnist.data import holdout
from multitask_mnist.errors import InvalidValueError
from multitask_mnist.experiments.benchmarks import Benchmark, DataDirs, get_benchmark
from multitask_mnist.losses import WeightedMultiLoss
from multitask_mnist.methods import METHODS
from multitask_mnist.training import Callback, ModelCheckpoint, Trainer, TrainerConfig

__all__ = ["PROTOCOLS", "RESULT_FILE", "Cell", "Selection", "grid", "run_cell"]

logger = logging.getLogger(__name__)

#: How a cell selects its checkpoint: on held-out data, or the papers' best test epoch.
PROTOCOLS = ("heldout", "papers")
#: What a finished cell writes into its folder.
RESULT_FILE = "result.json"
#: The prefix of a single-task baseline in a cell's ``method``: ``single:left``.
SINGLE = "single:"


@dataclass(frozen=True)
class Cell:
    """One run of a comparison.

    Attributes:
        benchmark: A registered benchmark's name.
        method: A method's name (:data:`~multitask_mnist.methods.METHODS`), or
            ``single:TASK`` for the single-task baseline of ``TASK`` (the benchmark's
            network with the other tasks' loss weights at 0).
        seed: The run's seed: the training data's pairing, the validation split, the
            initialisation and the shuffling.
        protocol: ``"heldout"`` or ``"papers"`` (see the module's docstring).
        settings: :class:`~multitask_mnist.training.TrainerConfig` values that replace
            the benchmark's recipe, as ``(name, value)`` pairs.
        limit: Train on the first ``limit`` training samples only (for quick tries).
        architecture: A registered preset that replaces the benchmark's network (with
            the same inputs and tasks: ``multi_mnist_mmoe`` for ``multi_mnist``);
            ``None`` for the benchmark's own. The row is then ``METHOD+PRESET``.

    Raises:
        ValueError: An unknown benchmark, method, task, protocol or preset.

    Example:
        >>> cell = Cell("multi_mnist", "single:left", seed=2, settings=(("epochs", 3),))
        >>> cell.name, cell.tasks, cell.folder(Path("runs")).as_posix()
        ('single-left', ('left',), 'runs/multi_mnist/heldout/epochs-3/single-left/seed-2')
    """

    benchmark: str
    method: str
    seed: int
    protocol: Literal["heldout", "papers"] = "heldout"
    settings: tuple[tuple[str, Any], ...] = ()
    limit: int | None = None
    architecture: str | None = None

    def __post_init__(self) -> None:
        bench = get_benchmark(self.benchmark)
        if self.architecture is not None and self.architecture not in presets.names():
            listed = ", ".join(map(repr, presets.names()))
            raise InvalidValueError(
                f"Expected `architecture` to be a preset, one of {listed}, "
                f"got {self.architecture!r}"
            )
        if self.method.startswith(SINGLE):
            task = self.method.removeprefix(SINGLE)
            if task not in bench.tasks:
                raise InvalidValueError(
                    f"Expected a single-task baseline of one of {bench.tasks}, got {task!r}"
                )
        elif self.method not in METHODS:
            listed = ", ".join(map(repr, METHODS))
            raise InvalidValueError(f"Expected `method` to be one of {listed}, got {self.method!r}")
        if self.protocol not in PROTOCOLS:
            raise InvalidValueError(
                f"Expected `protocol` to be one of {PROTOCOLS}, got {self.protocol!r}"
            )
        unknown = sorted(set(dict(self.settings)) - set(TrainerConfig.field_names()))
        if unknown:
            raise InvalidValueError(f"Unknown setting(s) {', '.join(unknown)} in `settings`")

    @property
    def name(self) -> str:
        """The method (``METHOD+PRESET`` with an architecture), or ``single-TASK``: the
        cell's row in the tables."""
        name = self.method.replace(":", "-")
        return name if self.architecture is None else f"{name}+{self.architecture}"

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks this cell is scored on (all of the benchmark's, or the baseline's one)."""
        if self.method.startswith(SINGLE):
            return (self.method.removeprefix(SINGLE),)
        return get_benchmark(self.benchmark).tasks

    def tag(self) -> str:
        """The settings and limit as a folder name: ``default``, ``epochs-3_lr-0.01``."""
        parts = [f"{key}-{value}" for key, value in sorted(self.settings)]
        if self.limit is not None:
            parts.append(f"limit-{self.limit}")
        return "_".join(parts) or "default"

    def folder(self, root: Path) -> Path:
        """Where the cell's run lives under the comparison's ``root``."""
        return root / self.benchmark / self.protocol / self.tag() / self.name / f"seed-{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        """The cell as plain values (``result.json`` records it).

        Example:
            >>> Cell("digit_sum", "none", 0).to_dict()["method"]
            'none'
        """
        plain = dataclasses.asdict(self)
        plain["settings"] = [list(pair) for pair in self.settings]
        if self.architecture is None:  # the benchmark's own network, as before 0.3
            del plain["architecture"]
        return plain

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Cell:
        """The cell :meth:`to_dict` recorded.

        Example:
            >>> cell = Cell("digit_sum", "upgrad", 1, settings=(("epochs", 2),))
            >>> Cell.from_dict(cell.to_dict()) == cell
            True
        """
        fields = dict(values)
        fields["settings"] = tuple(tuple(pair) for pair in fields.get("settings", ()))
        return cls(**fields)


def grid(
    benchmark: str,
    methods: Sequence[str],
    seeds: Sequence[int],
    *,
    protocol: Literal["heldout", "papers"] = "heldout",
    single_task: bool = True,
    settings: Mapping[str, Any] | None = None,
    limit: int | None = None,
    architectures: Sequence[str | None] = (None,),
) -> list[Cell]:
    """The cells of a comparison, seed by seed (so that an interrupted grid has whole
    seeds to compare): the single-task baselines first, then each method.

    Args:
        benchmark: A registered benchmark.
        methods: Method names; ``none`` (equal weighting) is what the others are tested
            against.
        seeds: The seeds, e.g. ``range(5)``.
        protocol: ``"heldout"`` or ``"papers"``.
        single_task: Add the benchmark's single-task baselines (if it has any).
        settings: :class:`~multitask_mnist.training.TrainerConfig` values replacing the
            benchmark's recipe.
        limit: Train on the first ``limit`` training samples.
        architectures: Presets each method runs with (``None``: the benchmark's own
            network); the single-task baselines use the benchmark's own.

    Returns:
        The cells.

    Example:
        >>> [c.name for c in grid("multi_mnist", ["none", "upgrad"], [0])]
        ['single-left', 'single-right', 'none', 'upgrad']
        >>> [c.name for c in grid("multi_mnist", ["none"], [0], single_task=False,
        ...                       architectures=[None, "multi_mnist_mmoe"])]
        ['none', 'none+multi_mnist_mmoe']
    """
    bench = get_benchmark(benchmark)
    runs: list[tuple[str, str | None]] = [
        (method, architecture) for architecture in architectures for method in methods
    ]
    if single_task and bench.single_task and len(bench.tasks) > 1:
        runs = [(f"{SINGLE}{task}", None) for task in bench.tasks] + runs
    pairs = tuple(sorted((settings or {}).items()))
    return [
        Cell(benchmark, name, seed, protocol, pairs, limit, architecture)
        for seed in seeds
        for name, architecture in runs
    ]


class Selection(Callback):
    """Adds ``val_selection``, the mean of the cell's monitored validation metrics, to
    every epoch's metrics, before ``model_checkpoint`` reads it.

    Args:
        metrics: The validation metrics averaged, e.g. ``["val_left_accuracy"]``.

    Example:
        >>> metrics = {"val_left_accuracy": 96.0, "val_right_accuracy": 94.0}
        >>> Selection(list(metrics)).on_epoch_end(None, 1, metrics)  # type: ignore[arg-type]
        >>> metrics["val_selection"]
        95.0
    """

    name = "selection"
    #: The metric this callback adds.
    MONITOR = "val_selection"

    def __init__(self, metrics: Sequence[str]) -> None:
        self.metrics = list(metrics)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        metrics[self.MONITOR] = sum(float(metrics[m]) for m in self.metrics) / len(self.metrics)


def _trainer_config(bench: Benchmark, cell: Cell, folder: Path) -> TrainerConfig:
    values = {**bench.recipe, **dict(cell.settings)}
    return TrainerConfig(**values).replace(
        seed=cell.seed, output_dir=folder, progress=False, method=_method(cell)
    )


def _method(cell: Cell) -> str:
    return "none" if cell.method.startswith(SINGLE) else cell.method


def _data(
    bench: Benchmark, cell: Cell, dirs: DataDirs
) -> tuple[Dataset[Any], Dataset[Any] | None, Dataset[Any]]:
    train, test = bench.load(cell.seed, dirs)
    if cell.limit is not None:
        train = Subset(train, range(min(cell.limit, len(train))))  # type: ignore[arg-type]
    if cell.protocol == "papers":
        return train, None, test
    size = min(bench.validation_size, max(1, len(train) // 6))  # type: ignore[arg-type]
    fit_part, validation = holdout(train, size, cell.seed)
    return fit_part, validation, test


def read_result(cell: Cell, root: Path) -> dict[str, Any] | None:
    """The finished cell's ``result.json``, or ``None`` if it has not finished (or the
    file belongs to another cell)."""
    path = cell.folder(root) / RESULT_FILE
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        logger.warning("%s is damaged; the cell runs again", path)
        return None
    if not isinstance(result, dict) or result.get("cell") != cell.to_dict():
        return None
    return result


def run_cell(cell: Cell, root: Path, dirs: DataDirs | None = None) -> dict[str, Any]:
    """Train ``cell`` in its folder under ``root`` and return its result; a finished cell
    returns its recorded result at once, an interrupted one resumes.

    Args:
        cell: The cell.
        root: The comparison's folder.
        dirs: Where the raw data is.

    Returns:
        ``result.json``'s content: the cell, the selected epoch, the validation and test
        metrics of the selected checkpoint (per task, in percent), the number of
        parameters and the wall time.

    Raises:
        TrainingInterrupted: SIGTERM or SIGINT stopped the run; it resumes next time.
    """
    done = read_result(cell, root)
    if done is not None:
        return done
    tic = time.perf_counter()
    bench = get_benchmark(cell.benchmark)
    folder = cell.folder(root)
    folder.mkdir(parents=True, exist_ok=True)
    train, validation, test = _data(bench, cell, dirs or DataDirs())
    torch.manual_seed(cell.seed)
    model = (
        presets.get(bench.preset, **dict(bench.preset_kwargs))
        if cell.architecture is None
        else presets.get(cell.architecture)
    )
    missing = set(bench.tasks) - set(model.task_names)
    if missing:
        raise InvalidValueError(
            f"Preset {cell.architecture!r} does not predict the tasks {sorted(missing)} of "
            f"benchmark {cell.benchmark!r}"
        )
    weights = (
        {task: float(task in cell.tasks) for task in model.task_names}
        if cell.method.startswith(SINGLE)
        else None
    )
    selected = validation if validation is not None else test  # papers: the test split
    monitored = [f"val_{bench.metric(task)}" for task in cell.tasks]
    trainer = Trainer(
        model,
        _trainer_config(bench, cell, folder),
        loss=WeightedMultiLoss(weights),
        callbacks=[
            Selection(monitored),
            ModelCheckpoint(monitor=Selection.MONITOR, mode="max"),
        ],
        run_config={"comparison_cell": cell.to_dict()},
    )
    try:
        history = trainer.fit(train, selected, resume=True)
        epochs = history.epochs
        best = max(range(len(epochs)), key=lambda i: epochs[i][Selection.MONITOR])
        metrics = [bench.metric(task) for task in cell.tasks]
        result: dict[str, Any] = {
            "cell": cell.to_dict(),
            "protocol": cell.protocol,
            "selected_on": "validation" if validation is not None else "test (papers)",
            "best_epoch": best + 1,
            "epochs": len(epochs),
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_time_s": trainer.train_time,
        }
        if validation is not None:
            result["validation"] = {m: epochs[best][f"val_{m}"] for m in metrics}
            best_path = folder / "best.pt"
            load_model_state(model, load_checkpoint(best_path)["model"], source=best_path)
            scores = trainer.test(test)  # once, on the selected checkpoint
            result["test"] = {m: scores[m] for m in metrics}
            if bench.probe is not None:
                result["test"] |= bench.probe(model, dirs or DataDirs())
        else:
            result["test"] = {m: epochs[best][f"val_{m}"] for m in metrics}
            result["test_last_epoch"] = {m: epochs[-1][f"val_{m}"] for m in metrics}
    finally:
        trainer.close()
    result["wall_time_s"] = time.perf_counter() - tic
    if not all(math.isfinite(v) for v in result["test"].values()):
        raise InvalidValueError(f"Cell {cell} ended with a non-finite test metric")
    write_text_atomic(folder / RESULT_FILE, json.dumps(result, indent=2) + "\n")
    return result
