"""The tables of a comparison: every run as CSV and JSON, a summary per method as
Markdown and reStructuredText, and a Pareto plot.

Each row is one method (or single-task baseline) over its seeds: per task, the test
metric's mean ± sample sd with its 95% t-interval; **Δm** against the single-task
baselines (per seed, against the baselines' mean over seeds; positive = better); and,
for every method but ``none``, a paired t-test against equal weighting (``none``) on the
per-seed Δm (on the mean metric over tasks where there is no baseline), over the seeds
both have, with Holm's adjustment across the methods. "better" or "worse" is written
only where the adjusted p-value is below 0.05.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multitask_mnist.checkpoint import write_text_atomic
from multitask_mnist.experiments.benchmarks import get_benchmark
from multitask_mnist.experiments.cells import SINGLE, Cell
from multitask_mnist.experiments.stats import (
    PairedTest,
    Summary,
    delta_m,
    holm,
    paired_test,
    summarize,
)

__all__ = ["BASELINE", "SIGNIFICANCE", "MethodRow", "Report", "build_reports", "write_reports"]

#: The method every other is tested against: equal weighting.
BASELINE = "none"
#: The level below which an adjusted p-value is called a difference.
SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class MethodRow:
    """One method's (or single-task baseline's) results over its seeds.

    Attributes:
        name: The method, or ``single-TASK``.
        seeds: The seeds it ran.
        tasks: Its test metric per task, summarized over the seeds.
        delta_m: Δm per seed, summarized; ``None`` without single-task baselines (or for
            a baseline itself).
        versus_none: Paired against ``none``: the per-seed difference and its test.
        p_holm: The test's p-value after Holm's adjustment.
        best_epoch: The mean selected epoch.
        wall_time_s: The mean wall time of a run.
        parameters: The network's number of parameters (``None`` where the results do
            not say).
        epoch_time_s: The mean training time of an epoch, evaluation excluded
            (``None`` where the results do not say).
    """

    name: str
    seeds: tuple[int, ...]
    tasks: Mapping[str, Summary]
    delta_m: Summary | None
    versus_none: PairedTest | None
    p_holm: float | None
    best_epoch: float
    wall_time_s: float
    parameters: int | None = None
    epoch_time_s: float | None = None

    @property
    def verdict(self) -> str:
        """``better`` or ``worse`` than ``none`` (adjusted p < 0.05), else ``no difference``
        (or an empty string for ``none`` and the baselines)."""
        if self.versus_none is None or self.p_holm is None:
            return ""
        if self.p_holm >= SIGNIFICANCE:
            return "no difference"
        return "better" if self.versus_none.difference.mean > 0 else "worse"


@dataclass(frozen=True)
class Report:
    """The summary of one comparison: a benchmark, a protocol and a set of settings.

    Attributes:
        benchmark: The benchmark's name.
        protocol: ``heldout`` or ``papers``.
        tag: The settings that replaced the benchmark's recipe (``epochs-10``).
        tasks: The benchmark's tasks.
        rows: One per method, baselines first.
        baseline: The single-task baselines' test metric per task (mean over seeds).
        probes: The benchmark's further test metrics (its ``probe``), each summarized
            in ``MethodRow.tasks`` under its name without ``_accuracy`` and shown
            after the tasks (MNIST-addition: ``digit``, the latent digit accuracy).
    """

    benchmark: str
    protocol: str
    tag: str
    tasks: tuple[str, ...]
    rows: tuple[MethodRow, ...]
    baseline: Mapping[str, float]
    probes: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        """``multi_mnist, heldout selection, epochs-10``."""
        selection = (
            "held-out selection"
            if self.protocol == "heldout"
            else "PAPERS' PROTOCOL (best epoch on test)"
        )
        return f"{self.benchmark}, {selection}, {self.tag}"

    def _table(self) -> tuple[list[str], list[list[str]]]:
        columns = self.tasks + self.probes
        header = ["method", "n"] + [f"{task} (%)" for task in columns]
        has_delta = any(row.delta_m is not None for row in self.rows)
        if has_delta:
            header.append("Δm (%)")
        header += ["vs none (paired)", "p (Holm)", "verdict", "epoch", "time/run (s)"]
        header += ["params", "train s/epoch"]
        body = []
        for row in self.rows:
            line = [row.name, str(len(row.seeds))]
            line += [_cell(row.tasks.get(task)) for task in columns]
            if has_delta:
                line.append(_cell(row.delta_m))
            paired = row.versus_none
            difference = None if paired is None else paired.difference
            line.append(
                "" if difference is None else f"{difference.mean:+.2f} {_interval(difference)}"
            )
            line.append("" if row.p_holm is None else f"{row.p_holm:.3f}")
            line += [row.verdict, f"{row.best_epoch:.1f}", f"{row.wall_time_s:.0f}"]
            line.append("" if row.parameters is None else f"{row.parameters:,}")
            line.append("" if row.epoch_time_s is None else f"{row.epoch_time_s:.1f}")
            body.append(line)
        return header, body

    def markdown(self) -> str:
        """The table in Markdown, under its title."""
        header, body = self._table()
        lines = [f"### {self.title}", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines += ["| " + " | ".join(line) + " |" for line in body]
        return "\n".join(lines) + "\n"

    def rst(self) -> str:
        """The table as an RST ``list-table``, under its title."""
        header, body = self._table()
        lines = [f".. list-table:: {self.title}", "   :header-rows: 1", ""]
        for line in [header, *body]:
            lines.append(f"   * - {line[0] or '..'}")
            lines += [f"     - {value}" if value else "     -" for value in line[1:]]
        return "\n".join(lines) + "\n"

    def plot(self, path: Path) -> Path | None:
        """The Pareto plot of a two-task comparison (task A's metric against task B's, 95%
        interval bars, the single-task point marked) as a PNG; ``None`` without
        matplotlib or with other than two tasks."""
        try:
            from matplotlib.figure import Figure
        except ImportError:
            return None
        if len(self.tasks) != 2:
            return None
        first, second = self.tasks
        figure = Figure(figsize=(7.5, 5))
        axes = figure.add_subplot()
        plotted = [row for row in self.rows if first in row.tasks and second in row.tasks]
        for i, row in enumerate(plotted):  # ten colours, then the next marker: no two alike
            x, y = row.tasks[first], row.tasks[second]
            axes.errorbar(
                x.mean,
                y.mean,
                xerr=x.half_width,
                yerr=y.half_width,
                fmt=_MARKERS[i // 10 % len(_MARKERS)],
                color=f"C{i % 10}",
                capsize=3,
                label=row.name,
            )
        if set(self.baseline) == set(self.tasks):
            axes.plot(
                self.baseline[first],
                self.baseline[second],
                "k*",
                markersize=12,
                label="single-task networks",
            )
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
        axes.set_xlabel(f"{first} test accuracy (%)")
        axes.set_ylabel(f"{second} test accuracy (%)")
        axes.set_title(self.title, fontsize=9)
        axes.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(path, dpi=120)
        return path


def _cell(summary: Summary | None) -> str:
    if summary is None:
        return ""
    if summary.n < 2:
        return f"{summary.mean:.2f}"
    return f"{summary.mean:.2f} ± {summary.sd:.2f} {_interval(summary)}"


def _interval(summary: Summary) -> str:
    return "" if summary.n < 2 else f"[{summary.low:.2f}, {summary.high:.2f}]"


def _group_key(cell: Cell) -> tuple[str, str, str]:
    return (cell.benchmark, cell.protocol, cell.tag())


def build_reports(results: Sequence[Mapping[str, Any]]) -> list[Report]:
    """Summaries of ``results`` (``result.json`` contents), one per benchmark, protocol
    and settings.

    Example:
        >>> runs = [
        ...     {"cell": Cell("multi_mnist", m, s).to_dict(), "test": t, "best_epoch": 9,
        ...      "wall_time_s": 60.0}
        ...     for s in (0, 1)
        ...     for m, t in [("single:left", {"left_accuracy": 96.0}),
        ...                  ("single:right", {"right_accuracy": 95.0}),
        ...                  ("none", {"left_accuracy": 96.0 + s, "right_accuracy": 95.0})]
        ... ]
        >>> [report] = build_reports(runs)
        >>> [row.name for row in report.rows], round(report.rows[-1].delta_m.mean, 4)
        (['single-left', 'single-right', 'none'], 0.2604)
    """
    groups: dict[tuple[str, str, str], list[tuple[Cell, Mapping[str, Any]]]] = {}
    for result in results:
        cell = Cell.from_dict(result["cell"])
        groups.setdefault(_group_key(cell), []).append((cell, result))
    return [_report(key, runs) for key, runs in sorted(groups.items())]


def _report(key: tuple[str, str, str], runs: Sequence[tuple[Cell, Mapping[str, Any]]]) -> Report:
    benchmark, protocol, tag = key
    bench = get_benchmark(benchmark)
    by_method: dict[str, dict[int, Mapping[str, Any]]] = {}
    for cell, result in runs:
        by_method.setdefault(cell.name, {})[cell.seed] = result
    baseline: dict[str, float] = {}
    for task in bench.tasks:
        single = by_method.get(f"{SINGLE}{task}".replace(":", "-"), {})
        if single:
            values = [r["test"][bench.metric(task)] for r in single.values()]
            baseline[task] = sum(values) / len(values)
    has_baseline = set(baseline) == set(bench.tasks) and len(bench.tasks) > 1
    task_metrics = {bench.metric(task) for task in bench.tasks}
    probe_metrics = {  # column name -> the metric's key
        metric.removesuffix("_accuracy"): metric
        for _, result in runs
        for metric in result["test"]
        if metric not in task_metrics
    }
    probes = tuple(probe_metrics)

    def per_seed_score(result: Mapping[str, Any]) -> float:
        scores = {t: float(result["test"][bench.metric(t)]) for t in bench.tasks}
        if has_baseline:
            return delta_m(scores, baseline)
        return sum(scores.values()) / len(scores)

    multi = {name: seeds for name, seeds in by_method.items() if not name.startswith("single-")}
    tests: dict[str, PairedTest] = {}
    if BASELINE in multi:
        for name, seeds in multi.items():
            common = sorted(set(seeds) & set(multi[BASELINE]))
            if name != BASELINE and common:
                tests[name] = paired_test(
                    [per_seed_score(seeds[s]) for s in common],
                    [per_seed_score(multi[BASELINE][s]) for s in common],
                )
    adjusted = holm({name: test.p_value for name, test in tests.items()}) if tests else {}
    order = sorted(by_method, key=lambda name: (not name.startswith("single-"), name != BASELINE))
    rows = []
    for name in order:
        seeds = by_method[name]
        results = [seeds[s] for s in sorted(seeds)]
        keys = {task: bench.metric(task) for task in bench.tasks} | probe_metrics
        tasks = {
            column: summarize([r["test"][key] for r in results])
            for column, key in keys.items()
            if all(key in r["test"] for r in results)
        }
        is_multi = name in multi
        rows.append(
            MethodRow(
                name=name,
                seeds=tuple(sorted(seeds)),
                tasks=tasks,
                delta_m=summarize([per_seed_score(r) for r in results])
                if is_multi and has_baseline
                else None,
                versus_none=tests.get(name),
                p_holm=adjusted.get(name),
                best_epoch=sum(float(r["best_epoch"]) for r in results) / len(results),
                wall_time_s=sum(float(r["wall_time_s"]) for r in results) / len(results),
                parameters=_same(r.get("parameters") for r in results),
                epoch_time_s=_mean_epoch_time(results),
            )
        )
    return Report(benchmark, protocol, tag, bench.tasks, tuple(rows), baseline, probes)


def _same(values: Iterable[Any]) -> int | None:
    """The one value every run reports (``None`` if any run does not, or they differ)."""
    distinct = set(values)
    return int(next(iter(distinct))) if len(distinct) == 1 and None not in distinct else None


def _mean_epoch_time(results: Sequence[Mapping[str, Any]]) -> float | None:
    """The mean over runs of training time per epoch, or ``None`` if a run lacks it."""
    if not all("train_time_s" in r and r.get("epochs") for r in results):
        return None
    return sum(float(r["train_time_s"]) / int(r["epochs"]) for r in results) / len(results)


#: The markers of a plot's rows, one per ten rows (each ten take the ten colours).
_MARKERS = ("o", "s", "^", "D", "v", "P")


#: The columns of ``runs.csv``.
RUN_COLUMNS = (
    "benchmark",
    "protocol",
    "settings",
    "method",
    "seed",
    "task",
    "test",
    "validation",
    "best_epoch",
    "epochs",
    "wall_time_s",
)


def runs_csv(results: Sequence[Mapping[str, Any]]) -> str:
    """Every run's test metric per task, one line each, as CSV."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RUN_COLUMNS)
    for result in results:
        cell = Cell.from_dict(result["cell"])
        for metric, value in result["test"].items():
            writer.writerow(
                [
                    cell.benchmark,
                    cell.protocol,
                    cell.tag(),
                    cell.name,
                    cell.seed,
                    metric.removesuffix("_accuracy"),
                    value,
                    result.get("validation", {}).get(metric, ""),
                    result["best_epoch"],
                    result["epochs"],
                    round(float(result["wall_time_s"]), 1),
                ]
            )
    return out.getvalue()


def write_reports(
    results: Sequence[Mapping[str, Any]],
    folder: Path,
    reports: Sequence[Report] | None = None,
) -> list[Path]:
    """Write ``runs.csv``, ``runs.json``, ``summary.md``, ``summary.rst`` and one
    ``pareto-*.png`` per two-task comparison (with matplotlib) into ``folder``.

    Args:
        results: ``result.json`` contents.
        folder: Where the files go (created if missing).
        reports: ``build_reports(results)``, when the caller has them already.

    Returns:
        The files written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    reports = build_reports(results) if reports is None else reports
    files = {
        "runs.csv": runs_csv(results),
        "runs.json": json.dumps(list(results), indent=1) + "\n",
        "summary.md": "\n".join(report.markdown() for report in reports),
        "summary.rst": "\n".join(report.rst() for report in reports),
    }
    written = []
    for name, text in files.items():
        write_text_atomic(folder / name, text)
        written.append(folder / name)
    for report in reports:
        plot = report.plot(folder / f"pareto-{report.benchmark}-{report.protocol}-{report.tag}.png")
        if plot is not None:
            written.append(plot)
    return written
