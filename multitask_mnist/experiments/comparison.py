"""A comparison declared once: the settings of ``multitask-mnist compare`` (each field is
a flag) and the function that runs it and writes its tables.

Example, in Python (what the command runs)::

    from multitask_mnist.experiments import Comparison, compare

    outcome = compare(Comparison("multi_mnist", methods=["none", "upgrad"], seeds=5))
    print(outcome.reports[0].markdown())
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from multitask_mnist.errors import InvalidValueError
from multitask_mnist.experiments.benchmarks import DataDirs, get_benchmark
from multitask_mnist.experiments.cells import Cell, grid
from multitask_mnist.experiments.report import Report, build_reports, write_reports
from multitask_mnist.experiments.runner import import_modules, run_grid

__all__ = ["Comparison", "Outcome", "compare"]

logger = logging.getLogger(__name__)

#: The recipe fields a comparison may replace, by the flag's name.
_OVERRIDES = ("epochs", "lr", "batch_size")


@dataclass(frozen=True)
class Comparison:
    """A comparison: benchmark x methods x seeds, and where and how to run it.

    Args:
        benchmark: A registered benchmark (``digit_sum``, ``multi_mnist``,
            ``multi_fashion``, ``multi_fashion_mnist``, ``mnist_addition_1``,
            ``mnist_addition_2``).
        methods: The methods compared, each a :data:`~multitask_mnist.methods.METHODS`
            name; ``none`` (equal weighting) is the one the others are tested against.
        seeds: How many seeds each method runs.
        first_seed: The first seed; seeds are ``first_seed .. first_seed + seeds - 1``.
        protocol: ``heldout``: select the checkpoint on a validation split carved out of
            the training data, test once; ``papers``: the best epoch on the test split,
            as published MultiMNIST tables do (labelled so in every table).
        single_task: Also train the single-task baselines (Δm's reference).
        epochs: Replace the benchmark's number of epochs.
        lr: Replace the benchmark's learning rate.
        batch_size: Replace the benchmark's batch size.
        limit: Train on the first N training samples (quick tries).
        workers: Cells run at once, each with its share of the cores (on Ray: the
            most trials at once).
        threads: Intra-op threads per cell; the cores divided by ``workers`` by default.
        ray_address: Run on Ray (the ``ray`` extra): ``auto`` (the cluster ``ray start``
            runs here), ``HOST:PORT``, or ``local`` (a Ray instance of this machine).
        output_dir: The comparison's folder: one folder per cell, and the tables.
        data_dir: The folder holding ``MNIST/raw/``; ``$MULTITASK_MNIST_DATA`` by default.
        fashion_dir: The folder of Fashion-MNIST's gzipped files;
            ``$MULTITASK_MNIST_FASHION``, else ``/usr/share/datasets/fashion-mnist``.
        architectures: Presets to run every method with, beside (or, without
            ``default`` in the list, instead of) the benchmark's own network:
            ``multi_mnist_mmoe``, ``multi_mnist_cgc``, ``multi_mnist_cross_stitch`` for
            the MultiMNIST family; ``default`` names the benchmark's own.
        imports: Modules to import first, which register benchmarks of your own
            (:func:`~multitask_mnist.experiments.register_benchmark`); worker processes
            and Ray trials import them too.

    Raises:
        ValueError: An unknown benchmark or method, or a count below 1.

    Example:
        >>> comparison = Comparison("multi_mnist", methods=["none", "upgrad"], seeds=2)
        >>> [(c.name, c.seed) for c in comparison.cells()][:3]
        [('single-left', 0), ('single-right', 0), ('none', 0)]
    """

    benchmark: str = "multi_mnist"
    methods: list[str] = field(default_factory=lambda: ["none"])
    seeds: int = 5
    first_seed: int = 0
    protocol: Literal["heldout", "papers"] = "heldout"
    single_task: bool = True
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    limit: int | None = None
    workers: int = 1
    threads: int | None = None
    ray_address: str | None = None
    output_dir: Path = Path("runs/compare")
    data_dir: Path | None = None
    fashion_dir: Path | None = None
    imports: list[str] = field(default_factory=list)
    architectures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        import_modules(self.imports)
        get_benchmark(self.benchmark)
        if not self.methods:
            raise InvalidValueError("Expected argument `methods` to name at least one method")
        if len(set(self.methods)) != len(self.methods):
            raise InvalidValueError(
                f"Expected argument `methods` without repeats, got {self.methods}"
            )
        for name in ("seeds", "workers", "epochs", "batch_size", "limit", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InvalidValueError(f"Expected argument `{name}` to be >= 1, got {value}")
        if self.first_seed < 0:
            raise InvalidValueError(
                f"Expected argument `first_seed` to be >= 0, got {self.first_seed}"
            )
        if self.lr is not None and not self.lr > 0:
            raise InvalidValueError(f"Expected argument `lr` to be > 0, got {self.lr}")
        self.cells()  # an unknown method fails here, naming it

    def settings(self) -> dict[str, Any]:
        """The recipe values this comparison replaces."""
        return {name: getattr(self, name) for name in _OVERRIDES if getattr(self, name) is not None}

    def cells(self) -> list[Cell]:
        """The grid: seed by seed, the single-task baselines then each method."""
        return grid(
            self.benchmark,
            self.methods,
            range(self.first_seed, self.first_seed + self.seeds),
            protocol=self.protocol,
            single_task=self.single_task,
            settings=self.settings(),
            limit=self.limit,
            architectures=[None if a == "default" else a for a in self.architectures] or [None],
        )

    def replace(self, **changes: Any) -> Comparison:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Outcome:
    """What :func:`compare` produced.

    Attributes:
        results: Each cell's ``result.json`` content, in the grid's order.
        reports: The summaries (one per benchmark, protocol and settings).
        files: The tables and plots written.
    """

    results: list[dict[str, Any]]
    reports: list[Report]
    files: list[Path]


def compare(
    comparison: Comparison, *, on_result: Callable[[Cell, dict[str, Any]], None] | None = None
) -> Outcome:
    """Run ``comparison`` (skipping finished cells, resuming interrupted ones) and write
    its tables into ``output_dir``: ``runs.csv``, ``runs.json``, ``summary.md``,
    ``summary.rst`` and a Pareto plot per two-task comparison.

    Raises:
        ComparisonError: Cells failed (the others are recorded).
        TrainingInterrupted: A signal stopped it; the same call again finishes it.
    """
    cells = comparison.cells()
    results = run_grid(
        cells,
        comparison.output_dir,
        dirs=DataDirs(comparison.data_dir, comparison.fashion_dir),
        workers=comparison.workers,
        threads=comparison.threads,
        ray_address=comparison.ray_address,
        imports=comparison.imports,
        on_result=on_result,
    )
    tables = comparison.output_dir / "tables" / cells[0].folder(Path()).parent.parent.as_posix()
    reports = build_reports(results)
    return Outcome(results, reports, write_reports(results, tables, reports))
