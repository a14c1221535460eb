"""The shipped benchmarks load their data with a field per task, build their network
and run a cell; a benchmark of one task has no baselines and no Δm."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from multitask_mnist import presets
from multitask_mnist.data import FASHION_ROOT, load_mnist
from multitask_mnist.experiments import BENCHMARKS, Cell, DataDirs, build_reports, run_cell

SHIPPED = [
    "digit_sum",
    "multi_mnist",
    "multi_fashion",
    "multi_fashion_mnist",
    *(f"mnist_addition_{n}{suffix}" for n in (1, 2, 4, 15, 100) for suffix in ("", "_trunk")),
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
    if name.startswith("mnist_addition"):  # its labels are what its head scores
        [task] = model.tasks
        prediction = model(batch.images)["sum"]
        loss = task.loss_per_sample(prediction, batch.sum)
        assert loss.shape == (2,) and bool(torch.isfinite(loss).all())


def test_a_one_task_benchmark_runs_without_baselines(tmp_path: Path, mnist_root: Path) -> None:
    cell = Cell("mnist_addition_1", "none", 0, settings=(("epochs", 1),), limit=600)
    result = run_cell(cell, tmp_path, DataDirs(mnist=mnist_root))
    assert set(result["test"]) == {"sum_accuracy", "digit_accuracy"}
    assert all(0 <= value <= 100 for value in result["test"].values())
    [report] = build_reports([result])
    assert report.tasks == ("sum",) and report.rows[0].delta_m is None
    assert report.probes == ("digit",) and "| digit (%) |" in report.markdown()


def test_the_latent_digit_accuracy_is_the_classifiers_on_the_mnist_test_images(
    mnist_root: Path,
) -> None:
    bench = BENCHMARKS["mnist_addition_15"]
    assert bench.probe is not None
    model = presets.get(bench.preset, **dict(bench.preset_kwargs))
    classifier = model.get_submodule("digits.classifier")
    for module in classifier.modules():  # a classifier that always says 7
        if isinstance(module, torch.nn.Linear) and module.out_features == 10:
            torch.nn.init.zeros_(module.weight)
            with torch.no_grad():
                module.bias.copy_(torch.arange(10.0) == 7)
    sevens = int((load_mnist(mnist_root, train=False).targets == 7).sum())
    assert bench.probe(model, DataDirs(mnist=mnist_root)) == {
        "digit_accuracy": pytest.approx(100 * sevens / 10_000)
    }
