"""A cell: its checks, its folder, selection on held-out data, the test evaluated once,
and skipping a finished cell."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from multitask_mnist import presets
from multitask_mnist.checkpoint import load_checkpoint, load_model_state
from multitask_mnist.data import Split
from multitask_mnist.experiments import Cell, DataDirs, get_benchmark, grid, run_cell
from multitask_mnist.experiments.cells import RESULT_FILE, _data, read_result
from multitask_mnist.training import Trainer
from tests.experiments import tiny


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"benchmark": "nope", "method": "none"}, "benchmark"),
        ({"benchmark": "multi_mnist", "method": "nope"}, "method"),
        ({"benchmark": "multi_mnist", "method": "single:middle"}, "single-task"),
        ({"benchmark": "multi_mnist", "method": "none", "protocol": "peek"}, "protocol"),
        ({"benchmark": "multi_mnist", "method": "none", "settings": (("epoch", 3),)}, "epoch"),
    ],
)
def test_a_cell_refuses_what_it_cannot_run(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Cell(seed=0, **kwargs)  # type: ignore[arg-type]


def test_the_grid_goes_seed_by_seed_with_the_baselines_first() -> None:
    cells = grid("multi_mnist", ["none", "upgrad"], [3, 4], settings={"epochs": 2})
    assert [(c.name, c.seed) for c in cells] == [
        (name, seed)
        for seed in (3, 4)
        for name in ("single-left", "single-right", "none", "upgrad")
    ]
    assert cells[0].folder(Path("r")) == Path("r/multi_mnist/heldout/epochs-2/single-left/seed-3")
    assert [c.name for c in grid("mnist_addition_1", ["none"], [0])] == ["none"]  # one task
    assert [c.name for c in grid("multi_mnist", ["none"], [0], single_task=False)] == ["none"]


def test_a_cell_selects_on_validation_and_tests_the_selected_checkpoint_once(
    tmp_path: Path,
) -> None:
    cell = Cell(tiny.NAME, "none", seed=1, settings=(("epochs", 3),))
    result = run_cell(cell, tmp_path)
    folder = cell.folder(tmp_path)
    history = json.loads((folder / "metrics.json").read_text())["epochs"]
    selection = [
        (epoch["val_left_accuracy"] + epoch["val_right_accuracy"]) / 2 for epoch in history
    ]
    assert result["best_epoch"] == 1 + selection.index(max(selection))
    assert result["selected_on"] == "validation" and result["epochs"] == 3
    # the test metrics are those of best.pt, scored again here on the test split
    model = presets.get("multi_mnist_lenet")
    load_model_state(model, load_checkpoint(folder / "best.pt")["model"], source=folder / "best.pt")
    _, test = tiny.load(1, None)  # type: ignore[arg-type]
    scores = Trainer(model, progress=False).evaluate(test)
    assert result["test"] == {
        "left_accuracy": pytest.approx(scores["left_accuracy"]),
        "right_accuracy": pytest.approx(scores["right_accuracy"]),
    }


def test_the_validation_split_is_held_out_of_training_by_the_seed() -> None:
    cell = Cell(tiny.NAME, "none", seed=2)
    train, validation, test = _data(get_benchmark(tiny.NAME), cell, DataDirs())
    assert isinstance(train, Split) and isinstance(validation, Split)
    assert len(train) == 500 and len(validation) == 100 and len(test) == 200
    assert not set(train.indices.tolist()) & set(validation.indices.tolist())
    other = _data(get_benchmark(tiny.NAME), Cell(tiny.NAME, "none", seed=3), DataDirs())[1]
    assert not torch.equal(other.indices, validation.indices)  # type: ignore[union-attr]
    papers = _data(get_benchmark(tiny.NAME), Cell(tiny.NAME, "none", 2, "papers"), DataDirs())
    assert len(papers[0]) == 600 and papers[1] is None  # the papers' protocol: no split


def test_a_finished_cell_is_read_back_not_run_again(tmp_path: Path) -> None:
    cell = Cell(tiny.NAME, "none", seed=0, settings=(("epochs", 1),))
    first = run_cell(cell, tmp_path)
    path = cell.folder(tmp_path) / RESULT_FILE
    stamp = path.stat().st_mtime_ns
    assert run_cell(cell, tmp_path) == first
    assert path.stat().st_mtime_ns == stamp
    assert read_result(Cell(tiny.NAME, "none", seed=0, settings=(("epochs", 2),)), tmp_path) is None


def test_a_damaged_result_runs_the_cell_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cell = Cell(tiny.NAME, "none", seed=0, settings=(("epochs", 1),))
    first = run_cell(cell, tmp_path)
    (cell.folder(tmp_path) / RESULT_FILE).write_text("{not json")
    assert read_result(cell, tmp_path) is None
    assert "damaged" in caplog.text
    assert run_cell(cell, tmp_path)["test"] == first["test"]  # resumed from last.pt: same


def test_the_papers_protocol_scores_the_test_split_every_epoch(tmp_path: Path) -> None:
    cell = Cell(tiny.NAME, "none", seed=0, protocol="papers", settings=(("epochs", 3),))
    result = run_cell(cell, tmp_path)
    history = json.loads((cell.folder(tmp_path) / "metrics.json").read_text())["epochs"]
    best = history[result["best_epoch"] - 1]
    assert result["selected_on"] == "test (papers)"
    assert result["test"]["left_accuracy"] == best["val_left_accuracy"]
    assert result["test_last_epoch"]["left_accuracy"] == history[-1]["val_left_accuracy"]


def test_a_single_task_baseline_trains_its_task_only(tmp_path: Path) -> None:
    cell = Cell(tiny.NAME, "single:right", seed=0, settings=(("epochs", 1),))
    result = run_cell(cell, tmp_path)
    assert set(result["test"]) == {"right_accuracy"}
    history = json.loads((cell.folder(tmp_path) / "metrics.json").read_text())["epochs"]
    assert (history[0]["weight_left"], history[0]["weight_right"]) == (0.0, 1.0)
