"""Comparisons a reviewer can trust: benchmark x method x seed, each cell an ordinary
Trainer run in its own folder, selected on held-out data, summarized with intervals,
Δm and paired tests.

- ``benchmarks``: the registered benchmarks.
- ``cells``: one run of a comparison, and the grid.
- ``runner``: running a grid here, in worker processes
  or on Ray.
- ``stats``: intervals, Δm, paired tests, Holm.
- ``report``: the tables and the Pareto plot.
- ``comparison``: all of it behind one settings class,
  :class:`Comparison`, which ``multitask-mnist compare`` parses.
"""

from multitask_mnist.experiments.benchmarks import (
    BENCHMARKS,
    Benchmark,
    DataDirs,
    get_benchmark,
    register_benchmark,
)
from multitask_mnist.experiments.cells import Cell, grid, run_cell
from multitask_mnist.experiments.comparison import Comparison, Outcome, compare
from multitask_mnist.experiments.report import Report, build_reports, write_reports
from multitask_mnist.experiments.runner import ComparisonError, run_grid

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "Cell",
    "Comparison",
    "ComparisonError",
    "DataDirs",
    "Outcome",
    "Report",
    "build_reports",
    "compare",
    "get_benchmark",
    "grid",
    "register_benchmark",
    "run_cell",
    "run_grid",
    "write_reports",
]
