"""``Comparison`` and ``multitask-mnist compare``: the settings declared once, checked at
the boundary, and the command's output."""

from __future__ import annotations

from pathlib import Path

import pytest

from multitask_mnist.cli import main
from multitask_mnist.experiments import Comparison, compare
from tests.experiments import tiny


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"benchmark": "cifar"}, "benchmark"),
        ({"methods": []}, "methods"),
        ({"methods": ["none", "none"]}, "repeats"),
        ({"methods": ["none", "best"]}, "best"),
        ({"seeds": 0}, "seeds"),
        ({"workers": 0}, "workers"),
        ({"epochs": 0}, "epochs"),
        ({"lr": -1.0}, "lr"),
        ({"first_seed": -1}, "first_seed"),
        ({"imports": ["no_such_module"]}, "no_such_module"),
    ],
)
def test_a_comparison_refuses_bad_settings(changes: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Comparison(**changes)  # type: ignore[arg-type]


def test_the_overrides_reach_every_cell_and_the_seeds_start_where_asked() -> None:
    comparison = Comparison(
        "multi_mnist", methods=["none"], seeds=2, first_seed=7, epochs=3, lr=0.01
    )
    cells = comparison.cells()
    assert [(c.name, c.seed) for c in cells] == [
        ("single-left", 7),
        ("single-right", 7),
        ("none", 7),
        ("single-left", 8),
        ("single-right", 8),
        ("none", 8),
    ]
    assert all(dict(c.settings) == {"epochs": 3, "lr": 0.01} for c in cells)


def test_compare_writes_the_tables(tmp_path: Path) -> None:
    outcome = compare(
        Comparison(tiny.NAME, methods=["none", "upgrad"], seeds=2, output_dir=tmp_path, threads=1)
    )
    assert len(outcome.results) == 2 * 4
    [report] = outcome.reports
    assert [row.name for row in report.rows] == ["single-left", "single-right", "none", "upgrad"]
    tables = tmp_path / "tables" / tiny.NAME / "heldout" / "default"
    assert {p.name for p in outcome.files} >= {"runs.csv", "summary.md", "summary.rst"}
    assert all(path.parent == tables for path in outcome.files)


def test_the_command_takes_spaced_methods_and_prints_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "compare",
        "--benchmark",
        tiny.NAME,
        "--methods",
        "none",
        "upgrad",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--no-single-task",
        "--output-dir",
        str(tmp_path),
        "--threads",
        "1",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "[1/2] none seed 0: left" in out and "[2/2] upgrad seed 0" in out
    assert "| upgrad | 1 |" in out and "summary.md" in out


def test_the_command_fails_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--benchmark", "multi_mnist", "--methods", "none", "best"]) != 0
    err = capsys.readouterr().err
    assert "best" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["compare", "--benchmark", "cifar"]) != 0
    assert "multi_mnist" in capsys.readouterr().err  # the known benchmarks are listed


def test_architectures_join_the_grid_as_rows(tmp_path: Path) -> None:
    comparison = Comparison(
        tiny.NAME,
        methods=["none"],
        seeds=1,
        epochs=1,
        single_task=False,
        threads=1,
        architectures=["default", "multi_mnist_cross_stitch"],
        output_dir=tmp_path,
    )
    [report] = compare(comparison).reports
    assert [row.name for row in report.rows] == ["none", "none+multi_mnist_cross_stitch"]
    [stitched] = [c for c in comparison.cells() if c.architecture]
    assert stitched.folder(tmp_path).name == "seed-0"
    assert stitched.folder(tmp_path).parent.name == "none+multi_mnist_cross_stitch"
    assert "architecture" not in comparison.cells()[0].to_dict()  # old results still match


def test_an_architecture_must_be_a_preset_with_the_benchmarks_tasks(tmp_path: Path) -> None:
    from multitask_mnist.experiments import Cell, run_cell

    with pytest.raises(ValueError, match="architecture"):
        Comparison(tiny.NAME, architectures=["resnet"])
    with pytest.raises(ValueError, match=r"does not predict the tasks \['left', 'right'\]"):
        run_cell(Cell(tiny.NAME, "none", 0, architecture="mnist_sum"), tmp_path)
