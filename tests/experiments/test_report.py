"""The tables of a comparison, checked against values computed by hand."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from multitask_mnist.experiments import Cell, build_reports, write_reports
from multitask_mnist.experiments.report import runs_csv


def _result(method: str, seed: int, **test: float) -> dict[str, Any]:
    return {
        "cell": Cell("multi_mnist", method, seed).to_dict(),
        "test": {f"{task}_accuracy": value for task, value in test.items()},
        "validation": {f"{task}_accuracy": value - 0.5 for task, value in test.items()},
        "best_epoch": 10,
        "epochs": 10,
        "wall_time_s": 60.0,
    }


# Three seeds. Baselines: left 96, 97, 98 (mean 97); right 95, 95, 95 (mean 95).
# none:   left 96, 97, 98, right 94, 95, 96; better: none + 1 point on left in every seed;
# worse:  left 90 on every seed, right as none.
RESULTS = [
    r
    for s in range(3)
    for r in (
        _result("single:left", s, left=96.0 + s),
        _result("single:right", s, right=95.0),
        _result("none", s, left=96.0 + s, right=94.0 + s),
        _result("upgrad", s, left=97.0 + s + (0.1 if s == 1 else 0.0), right=94.0 + s),
        _result("pcgrad", s, left=90.0, right=94.0 + s),
    )
]


def _delta(left: float, right: float) -> float:
    return 100 * ((left - 97) / 97 + (right - 95) / 95) / 2


def test_rows_summaries_and_delta_m_by_hand() -> None:
    [report] = build_reports(RESULTS)
    rows = {row.name: row for row in report.rows}
    assert [row.name for row in report.rows][:3] == ["single-left", "single-right", "none"]
    assert report.baseline == {"left": 97.0, "right": 95.0}
    none = rows["none"]
    assert none.tasks["left"].mean == 97.0 and none.tasks["left"].sd == 1.0
    deltas = [_delta(96 + s, 94 + s) for s in range(3)]
    assert none.delta_m is not None
    assert none.delta_m.mean == pytest.approx(sum(deltas) / 3)
    assert none.delta_m.half_width == pytest.approx(
        4.302652729911275 * none.delta_m.sd / math.sqrt(3)
    )
    assert rows["single-left"].delta_m is None and rows["none"].versus_none is None


def test_methods_are_tested_against_none_paired_by_seed_with_holm() -> None:
    [report] = build_reports(RESULTS)
    rows = {row.name: row for row in report.rows}
    upgrad, pcgrad = rows["upgrad"], rows["pcgrad"]
    assert upgrad.versus_none is not None and pcgrad.versus_none is not None
    gains = [
        _delta(97 + s + (0.1 if s == 1 else 0), 94 + s) - _delta(96 + s, 94 + s) for s in range(3)
    ]
    assert upgrad.versus_none.difference.mean == pytest.approx(sum(gains) / 3)
    raw = {"upgrad": upgrad.versus_none.p_value, "pcgrad": pcgrad.versus_none.p_value}
    low, high = sorted(raw.values())
    assert sorted([upgrad.p_holm, pcgrad.p_holm]) == pytest.approx([2 * low, max(2 * low, high)])
    assert upgrad.verdict == "better" and pcgrad.verdict == "worse"


def test_no_verdict_without_significance() -> None:
    noisy = [r for r in RESULTS if r["cell"]["method"] in ("none", "single:left", "single:right")]
    for s, left in enumerate([97.0, 96.0, 99.0]):
        noisy.append(_result("mgda", s, left=left, right=94.0 + s))
    [report] = build_reports(noisy)
    [mgda] = [row for row in report.rows if row.name == "mgda"]
    assert mgda.verdict == "no difference" and mgda.p_holm is not None and mgda.p_holm > 0.05


def test_the_tables_and_files(tmp_path: Path) -> None:
    files = write_reports(RESULTS, tmp_path)
    names = {path.name for path in files}
    assert {"runs.csv", "runs.json", "summary.md", "summary.rst"} <= names
    assert any(name.startswith("pareto-") and name.endswith(".png") for name in names)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "runs.csv").read_text())))
    assert len(rows) == 3 * (1 + 1 + 2 + 2 + 2)  # one line per run and task
    first = rows[0]
    assert (first["method"], first["seed"], first["task"], first["test"]) == (
        "single-left",
        "0",
        "left",
        "96.0",
    )
    assert json.loads((tmp_path / "runs.json").read_text()) == RESULTS
    markdown = (tmp_path / "summary.md").read_text()
    assert "held-out selection" in markdown and "| upgrad | 3 |" in markdown
    assert "| 97.00 ± 1.00 [94.52, 99.48] |" in markdown  # none, left: t(.975, 2) = 4.303
    rst = (tmp_path / "summary.rst").read_text()
    assert ".. list-table::" in rst and "     - better" in rst


def test_the_papers_protocol_is_labelled_and_kept_apart() -> None:
    papers = [dict(r, cell=dict(r["cell"], protocol="papers")) for r in RESULTS]
    reports = build_reports(RESULTS + papers)
    assert [r.protocol for r in reports] == ["heldout", "papers"]
    assert "PAPERS' PROTOCOL (best epoch on test)" in reports[1].markdown()
    assert runs_csv(papers).splitlines()[1].startswith("multi_mnist,papers,")


def test_parameters_and_time_per_epoch_come_from_the_runs() -> None:
    results = [
        r
        | {
            "parameters": 1000 + (0 if r["cell"]["method"] != "pcgrad" else 5),
            "train_time_s": 20.0 + 10 * r["cell"]["seed"],
        }
        for r in RESULTS
    ]
    results[-1] = {k: v for k, v in results[-1].items() if k != "train_time_s"}  # a pcgrad run
    [report] = build_reports(results)
    rows = {row.name: row for row in report.rows}
    assert rows["none"].parameters == 1000 and rows["pcgrad"].parameters == 1005
    assert rows["none"].epoch_time_s == pytest.approx((2.0 + 3.0 + 4.0) / 3)  # 10 epochs each
    assert rows["pcgrad"].epoch_time_s is None  # a run that does not say
    line = next(line for line in report.markdown().splitlines() if line.startswith("| none |"))
    assert line.endswith("| 1,000 | 3.0 |")
    [plain] = build_reports(RESULTS)  # older results without either: empty cells
    assert all(row.parameters is None for row in plain.rows)


def test_probe_metrics_are_columns_with_or_without_a_percent_suffix() -> None:
    results = [
        r | {"test": r["test"] | {"digit_accuracy": 99.0 + s, "calibration": 0.5}}
        for s, r in enumerate(RESULTS)
        if not r["cell"]["method"].startswith("single")
    ]
    [report] = build_reports(results)
    assert report.probes == ("digit", "calibration")
    none = next(row for row in report.rows if row.name == "none")
    assert none.tasks["calibration"].mean == 0.5
    assert "| digit (%) | calibration (%) |" in report.markdown()
