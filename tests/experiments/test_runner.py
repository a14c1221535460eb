"""Running a grid: worker processes give the results of one process, a failed cell does
not stop the others, a grid killed midway finishes where it stopped, and Ray runs the
same cells to the same results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from multitask_mnist._extras import MissingExtraError
from multitask_mnist.experiments import (
    Benchmark,
    ComparisonError,
    grid,
    register_benchmark,
    run_grid,
)
from multitask_mnist.experiments.benchmarks import BENCHMARKS
from multitask_mnist.experiments.cells import RESULT_FILE
from tests.experiments import tiny

pytestmark = pytest.mark.stress  # starts processes and sends signals: tests/stress.py repeats it

IMPORTS = ["tests.experiments.tiny"]
ROOT = Path(__file__).resolve().parents[2]


def _scores(results: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (r["cell"]["method"], r["cell"]["seed"], r["best_epoch"], r["test"], r.get("validation"))
        for r in results
    ]


@pytest.fixture(scope="module")
def in_one_process(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    cells = grid(tiny.NAME, ["none", "upgrad"], [0], single_task=False)
    return run_grid(cells, tmp_path_factory.mktemp("one"), threads=1)


def test_two_workers_give_the_results_of_one_process(
    in_one_process: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the workers import tests.experiments.tiny from here
    cells = grid(tiny.NAME, ["none", "upgrad"], [0], single_task=False)
    seen: list[str] = []
    results = run_grid(
        cells,
        tmp_path,
        workers=2,
        threads=1,
        imports=IMPORTS,
        on_result=lambda cell, result: seen.append(cell.name),
    )
    assert _scores(results) == _scores(in_one_process)
    assert sorted(seen) == ["none", "upgrad"]
    logs = [(cell.folder(tmp_path) / "worker.log").read_text() for cell in cells]
    assert all("Traceback" not in log for log in logs)


def _broken(seed: int, dirs: Any) -> Any:
    raise RuntimeError("the data of this benchmark is broken on purpose")


if "tiny_broken" not in BENCHMARKS:
    register_benchmark(
        Benchmark("tiny_broken", "fails", ("left", "right"), "multi_mnist_lenet", _broken)
    )


def test_a_failed_cell_is_named_after_the_others_finished(tmp_path: Path) -> None:
    cells = grid("tiny_broken", ["none"], [0], single_task=False) + grid(
        tiny.NAME, ["none"], [0], single_task=False, settings={"epochs": 1}
    )
    with pytest.raises(ComparisonError, match=r"1 cell.*tiny_broken.*broken on purpose") as error:
        run_grid(cells, tmp_path, threads=1)
    assert [cell.benchmark for cell, _ in error.value.failures] == ["tiny_broken"]
    assert (cells[1].folder(tmp_path) / RESULT_FILE).is_file()  # the other one finished


def test_a_failed_worker_names_its_cell_and_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    cells = grid(tiny.NAME, ["none"], [0], single_task=False)
    (cells[0].folder(tmp_path)).mkdir(parents=True)
    (cells[0].folder(tmp_path) / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ComparisonError, match=r"status 1: .*last\.pt.*worker\.log"):
        run_grid(cells, tmp_path, workers=2, threads=1, imports=IMPORTS)


def test_bad_arguments_are_refused_before_anything_runs(tmp_path: Path) -> None:
    cells = grid(tiny.NAME, ["none"], [0], single_task=False)
    with pytest.raises(ValueError, match="workers"):
        run_grid(cells, tmp_path, workers=0)
    with pytest.raises(ValueError, match="threads"):
        run_grid(cells, tmp_path, threads=0)
    with pytest.raises(ValueError, match="once"):
        run_grid(cells + cells, tmp_path)
    with pytest.raises(ValueError, match="no_such_module"):
        run_grid(cells, tmp_path, imports=["no_such_module"])
    assert not any(tmp_path.iterdir())


COMMAND = [
    sys.executable,
    "-m",
    "multitask_mnist",
    "compare",
    "--benchmark",
    tiny.NAME,
    "--imports",
    *IMPORTS,
    "--methods",
    "none",
    "upgrad",
    "--seeds",
    "1",
    "--epochs",
    "8",
    "--no-single-task",
    "--threads",
    "1",
]


def _results(root: Path) -> list[Path]:
    return sorted(root.glob(f"{tiny.NAME}/**/{RESULT_FILE}"))


def _unfinished(root: Path) -> list[Path]:
    """The cells with a checkpoint and no result: stopped or still training."""
    saved = root.glob(f"{tiny.NAME}/**/last.pt")
    return [path.parent for path in saved if not (path.parent / RESULT_FILE).exists()]


def test_a_grid_killed_midway_finishes_where_it_stopped(tmp_path: Path) -> None:
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [*COMMAND, "--workers", "2", "--output-dir", str(killed)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120

    def midway() -> bool:  # a cell finished, and another is training (it has saved)
        return bool(_results(killed)) and bool(_unfinished(killed))

    # Not a clock: on a busy machine the second cell may still be starting when the first
    # ends, and a cell stopped before it trains has nothing to save.
    while not midway() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    finished = {path: path.stat().st_mtime_ns for path in _results(killed)}
    assert process.returncode == 128 + signal.SIGTERM, err.decode()
    assert len(finished) == 1, "the grid must stop midway for this test to mean anything"
    assert _unfinished(killed), "a running cell kept its checkpoint when stopped"

    again = subprocess.run(
        [*COMMAND, "--workers", "2", "--output-dir", str(killed)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert all(path.stat().st_mtime_ns == stamp for path, stamp in finished.items())
    full = subprocess.run(
        [*COMMAND, "--output-dir", str(reference)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert full.returncode == 0, full.stderr

    def read(root: Path) -> list[Any]:
        out = []
        for path in _results(root):
            r = json.loads(path.read_text())
            out.append((r["cell"], r["best_epoch"], r["test"], r["validation"]))
        return out

    assert read(killed) == read(reference)  # resumed cells end exactly where whole ones do
    assert "| upgrad | 1 |" in again.stdout and "summary.md" in again.stdout


def _ray() -> Any:
    """Ray; the dev extra installs it, so CI fails rather than skips without it."""
    if os.environ.get("CI") == "true":
        import ray

        return ray
    return pytest.importorskip("ray")


def test_ray_runs_the_same_cells_to_the_same_results(
    in_one_process: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ray = _ray()
    monkeypatch.chdir(ROOT)
    cells = grid(tiny.NAME, ["none", "upgrad"], [0], single_task=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a local instance: no token to write
    # Ray runs its workers at niceness 15: beside a busy process they would starve
    monkeypatch.setenv("RAY_worker_niceness", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        results = run_grid(cells[:1], tmp_path, ray_address="auto", threads=1, imports=IMPORTS)
        assert _scores(results) == _scores(in_one_process[:1])
        # the same command again: the finished cells are skipped, the others run on Ray
        results = run_grid(
            cells, tmp_path, ray_address="auto", workers=2, threads=1, imports=IMPORTS
        )
        assert _scores(results) == _scores(in_one_process)
    finally:
        ray.shutdown()
    for cell in cells:
        assert (cell.folder(tmp_path) / "last.pt").is_file()  # the same folders as here


def test_without_ray_one_line_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    cells = grid(tiny.NAME, ["none"], [0], single_task=False)
    with pytest.raises(MissingExtraError, match=r"multitask-mnist\[ray\]"):
        run_grid(cells, tmp_path, ray_address="auto")
