"""The shipped benchmarks load their data with a field per task, build their network
and run a cell; a benchmark of one task has no baselines and no Δm."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from multitask_mnist import presets
from multitask_mnist.data import FASHION_ROOT
from multitask_mnist.experiments import BENCHMARKS, Cell, DataDirs, build_reports, run_cell

SHIPPED = [
    "digit_sum",
    "multi_mnist",
    "multi_fashion",
    "multi_fashion_mnist",
    "mnist_addition_1",
    "mnist_addition_2",
]


def _dirs(name: str, mnist_root: Path) -> DataDirs:
    fashion = Path(os.environ.get("MULTITASK_MNIST_FASHION") or FASHION_ROOT)
    if "fashion" in name and not (fashion / "t10k-images-idx3-ubyte.gz").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail("Fashion-MNIST is not installed: apt-get install dataset-fashion-mnist")
        pytest.skip("Fashion-MNIST is not installed")
    return DataDirs(mnist=mnist_root, fashion=fashion)


def test_the_shipped_benchmarks_are_registered() -> None:
    assert set(SHIPPED) <= set(BENCHMARKS)


@pytest.mark.parametrize("name", SHIPPED)
def test_a_benchmark_loads_data_its_network_reads(name: str, mnist_root: Path) -> None:
    bench = BENCHMARKS[name]
    train, test = bench.load(1, _dirs(name, mnist_root))
    assert bench.validation_size < len(train)  # type: ignore[arg-type]
    model = presets.get(bench.preset, **dict(bench.preset_kwargs))
    assert set(bench.tasks) <= set(model.task_names)
    batch = test.get_batch([0, 1])  # type: ignore[attr-defined]
    fields = batch._fields
    assert all(task in fields for task in bench.tasks)


def test_a_one_task_benchmark_runs_without_baselines(tmp_path: Path, mnist_root: Path) -> None:
    cell = Cell("mnist_addition_1", "none", 0, settings=(("epochs", 1),), limit=600)
    result = run_cell(cell, tmp_path, DataDirs(mnist=mnist_root))
    assert set(result["test"]) == {"sum_accuracy"} and 0 <= result["test"]["sum_accuracy"] <= 100
    [report] = build_reports([result])
    assert report.tasks == ("sum",) and report.rows[0].delta_m is None
