"""Run a comparison's cells: one after another, ``workers`` at once on this machine, or
on a Ray cluster through Ray Tune.

Whatever the backend, a cell is the same Trainer run in the same folder
(:meth:`Cell.folder <multitask_mnist.experiments.cells.Cell.folder>`) with the same
seed, so it gives the same result; a finished cell is skipped and an interrupted one
resumes from its checkpoint, so the same command again completes a grid.

Threads: a cell runs with ``threads`` intra-op threads (by default the machine's cores
divided among the workers), so that ``workers`` cells side by side do not oversubscribe
the cores. A cell that fails does not stop the others; the grid raises
:class:`ComparisonError` naming the failed cells once the others have finished.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from multitask_mnist._extras import require
from multitask_mnist.checkpoint import write_text_atomic
from multitask_mnist.errors import InvalidValueError, MultitaskMnistError
from multitask_mnist.experiments.benchmarks import DataDirs
from multitask_mnist.experiments.cells import RESULT_FILE, Cell, read_result, run_cell
from multitask_mnist.training import TrainingInterrupted

__all__ = ["ComparisonError", "available_cores", "run_grid"]

logger = logging.getLogger(__name__)

#: Called with each cell and its result as the cell finishes (or is found finished).
OnResult = Callable[[Cell, dict[str, Any]], None]

#: The environment variables that hold the data folders in a worker process.
_DATA_ENV = {"mnist": "MULTITASK_MNIST_DATA", "fashion": "MULTITASK_MNIST_FASHION"}
#: Seconds a worker has to write its checkpoint after SIGTERM before it is killed.
_STOP_GRACE_S = 120.0


class ComparisonError(MultitaskMnistError, RuntimeError):
    """Cells of a comparison failed; the others finished and are recorded.

    Attributes:
        failures: ``(cell, message)`` per failed cell.
    """

    def __init__(self, failures: Sequence[tuple[Cell, str]], root: Path) -> None:
        self.failures = list(failures)
        lines = [f"{cell.folder(root)}: {message}" for cell, message in self.failures]
        super().__init__(
            f"{len(self.failures)} cell(s) failed (the others are done; the same command "
            "runs the failed ones again): " + "; ".join(lines)
        )


def available_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_grid(
    cells: Sequence[Cell],
    root: str | os.PathLike[str],
    *,
    dirs: DataDirs | None = None,
    workers: int = 1,
    threads: int | None = None,
    ray_address: str | None = None,
    imports: Sequence[str] = (),
    on_result: OnResult | None = None,
) -> list[dict[str, Any]]:
    """Run ``cells`` under ``root`` and return their results, in the cells' order.

    Args:
        cells: The grid (:func:`~multitask_mnist.experiments.grid`).
        root: The comparison's folder; each cell runs in its own folder below it.
        dirs: Where the raw data is.
        workers: Cells run at once: 1 runs them in this process, more start one worker
            process per cell (``python -m multitask_mnist.experiments.worker``); on Ray,
            the most trials at once (default: as many as the cluster's CPUs fit).
        threads: Intra-op threads per cell; default: this machine's cores divided by
            ``workers`` (at least 1).
        ray_address: Run on Ray through Ray Tune (the ``ray`` extra): ``"auto"`` joins
            the cluster ``ray start`` runs on this machine, ``"HOST:PORT"`` a remote
            head, ``"local"`` starts a Ray instance of this machine's cores for this
            call. ``None``: no Ray.
        imports: Modules that register benchmarks of your own
            (:func:`~multitask_mnist.experiments.register_benchmark`): every worker
            process and Ray trial imports them before it runs a cell.
        on_result: Called with each cell and its result as it finishes.

    Returns:
        Each cell's ``result.json`` content.

    Raises:
        ValueError: ``workers`` or ``threads`` below 1, or two cells with one folder.
        ComparisonError: Cells failed (after the others finished).
        TrainingInterrupted: SIGTERM or SIGINT stopped the grid; running cells wrote
            their checkpoints and resume next time.
        MissingExtraError: ``ray_address`` is given and Ray is not installed.
    """
    if workers < 1:
        raise InvalidValueError(f"Expected argument `workers` to be >= 1, got {workers}")
    if threads is not None and threads < 1:
        raise InvalidValueError(f"Expected argument `threads` to be >= 1, got {threads}")
    base = Path(root).resolve()
    folders = [cell.folder(base) for cell in cells]
    if len(set(folders)) != len(folders):
        raise InvalidValueError("Expected argument `cells` to hold each cell once")
    dirs = dirs or DataDirs()
    modules = tuple(imports)
    import_modules(modules)  # a missing module fails here, before any worker starts
    per_cell = threads or max(1, available_cores() // workers)
    report = on_result or (lambda cell, result: None)
    if ray_address is not None:
        return _run_on_ray(cells, base, dirs, workers, per_cell, ray_address, modules, report)
    if workers == 1:
        return _run_here(cells, base, dirs, per_cell, report)
    return _run_in_processes(cells, base, dirs, workers, per_cell, modules, report)


def import_modules(modules: Sequence[str]) -> None:
    """Import ``modules`` (which register benchmarks).

    Raises:
        ValueError: A module that cannot be imported; the message names it.
    """
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise InvalidValueError(
                f"Expected argument `imports` to name importable modules, got {module!r} ({error})"
            ) from error


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def _collect(
    cells: Sequence[Cell], root: Path, failures: Sequence[tuple[Cell, str]]
) -> list[dict[str, Any]]:
    if failures:
        raise ComparisonError(failures, root)
    results = [read_result(cell, root) for cell in cells]
    missing = [cell for cell, result in zip(cells, results, strict=True) if result is None]
    if missing:
        raise ComparisonError([(cell, f"no {RESULT_FILE} was written") for cell in missing], root)
    return [result for result in results if result is not None]


def _run_here(
    cells: Sequence[Cell], root: Path, dirs: DataDirs, threads: int, report: OnResult
) -> list[dict[str, Any]]:
    failures: list[tuple[Cell, str]] = []
    with _torch_threads(threads):
        for cell in cells:
            try:
                report(cell, run_cell(cell, root, dirs))
            except (TrainingInterrupted, KeyboardInterrupt):
                raise
            except Exception as error:  # one failed cell does not stop the grid
                logger.error("%s failed: %s", cell.folder(root), _first_line(error))
                failures.append((cell, _first_line(error)))
    return _collect(cells, root, failures)


def worker_environment(dirs: DataDirs, threads: int) -> dict[str, str]:
    """The environment of a worker: the data folders and its thread count."""
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    for field, name in _DATA_ENV.items():
        folder = getattr(dirs, field)
        if folder is not None:
            env[name] = str(Path(folder).resolve())
    return env


def _command(cell: Cell, root: Path, threads: int, modules: Sequence[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "multitask_mnist.experiments.worker",
        str(root),
        json.dumps(cell.to_dict()),
        str(threads),
        *modules,
    ]


@contextmanager
def _stop_requests() -> Iterator[list[int]]:
    """Record SIGTERM and SIGINT instead of dying, so that running workers can be told."""
    received: list[int] = []

    def record(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, record) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_in_processes(
    cells: Sequence[Cell],
    root: Path,
    dirs: DataDirs,
    workers: int,
    threads: int,
    modules: Sequence[str],
    report: OnResult,
) -> list[dict[str, Any]]:
    env = {**os.environ, **worker_environment(dirs, threads)}
    pending = list(cells)
    running: dict[subprocess.Popen[bytes], Cell] = {}
    failures: list[tuple[Cell, str]] = []
    with _stop_requests() as stop:
        try:
            while (pending or running) and not stop:
                while pending and len(running) < workers:
                    cell = pending.pop(0)
                    if (done := read_result(cell, root)) is not None:
                        report(cell, done)
                        continue
                    cell.folder(root).mkdir(parents=True, exist_ok=True)
                    log = (cell.folder(root) / "worker.log").open("wb")
                    with log:
                        process = subprocess.Popen(
                            _command(cell, root, threads, modules), env=env, stdout=log, stderr=log
                        )
                    running[process] = cell
                for process in [p for p in running if p.poll() is not None]:
                    cell = running.pop(process)
                    result = read_result(cell, root)
                    if process.returncode == 0 and result is not None:
                        report(cell, result)
                    else:
                        message = _worker_failure(cell, root, process.returncode)
                        logger.error("%s failed: %s", cell.folder(root), message)
                        failures.append((cell, message))
                time.sleep(0.1)
        finally:
            _stop_workers(running, signal.SIGTERM)
    if stop:
        raise TrainingInterrupted(
            f"Stopped by signal {stop[0]}: the running cells wrote their checkpoints; run the "
            "same command again to finish the grid",
            stop[0],
        )
    return _collect(cells, root, failures)


def _worker_failure(cell: Cell, root: Path, returncode: int) -> str:
    log = cell.folder(root) / "worker.log"
    lines = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
    last = lines[-1] if lines else "no output"
    return f"the worker exited with status {returncode}: {last} (see {log})"


def _stop_workers(running: dict[subprocess.Popen[bytes], Cell], signum: int) -> None:
    for process in running:
        if process.poll() is None:
            process.send_signal(signum)
    for process in running:
        try:
            process.wait(timeout=_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _ray_trial(config: dict[str, Any]) -> None:
    """One cell as a Ray Tune trial (runs on a Ray worker)."""
    from ray import tune

    torch.set_num_threads(int(config["threads"]))
    import_modules(config["imports"])
    cell = Cell.from_dict(config["cell"])
    result = run_cell(cell, Path(config["root"]), DataDirs(**config["dirs"]))
    tune.report({"result_json": json.dumps(result)})


def _run_on_ray(
    cells: Sequence[Cell],
    root: Path,
    dirs: DataDirs,
    workers: int,
    threads: int,
    address: str,
    modules: Sequence[str],
    report: OnResult,
) -> list[dict[str, Any]]:
    ray = require("ray", "ray", "Running a comparison on Ray")
    tune = require("ray.tune", "ray", "Running a comparison on Ray")
    todo = []
    for cell in cells:
        if (done := read_result(cell, root)) is not None:
            report(cell, done)
        else:
            todo.append(cell)
    if todo:
        started = _connect(ray, address, dirs, threads)
        try:
            grid = _tune(tune, todo, root, dirs, workers, threads, modules)
        finally:
            if started:
                ray.shutdown()
        failures = _record_trials(grid, todo, root, report)
        if failures:
            raise ComparisonError(failures, root)
    return _collect(cells, root, [])


def _connect(ray: Any, address: str, dirs: DataDirs, threads: int) -> bool:
    """Connect to (or start) Ray; whether this call started it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    runtime_env = {"env_vars": {**worker_environment(dirs, threads), "RAY_CHDIR_TO_TRIAL_DIR": "0"}}
    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "runtime_env": runtime_env,
    }
    if address == "local":
        # Ray starts its workers at niceness 15, so that beside any other busy process
        # on this machine the cells would starve; here they are the work at hand.
        os.environ.setdefault("RAY_worker_niceness", "0")
        ray.init(num_cpus=available_cores(), **options)
    else:
        ray.init(address=address, **options)
    return True


def _key(cell: dict[str, Any]) -> str:
    return json.dumps(cell, sort_keys=True)


def _tune(
    tune: Any,
    cells: Sequence[Cell],
    root: Path,
    dirs: DataDirs,
    workers: int,
    threads: int,
    modules: Sequence[str],
) -> Any:
    by_key = {_key(cell.to_dict()): cell for cell in cells}

    def trial_name(trial: Any) -> str:
        cell = by_key[_key(trial.config["cell"])]
        return f"{cell.name}-seed-{cell.seed}"

    plain_dirs = {k: None if v is None else str(Path(v).resolve()) for k, v in vars(dirs).items()}
    tuner = tune.Tuner(
        tune.with_resources(_ray_trial, {"cpu": threads}),
        param_space={
            "cell": tune.grid_search([cell.to_dict() for cell in cells]),
            "root": str(root),
            "dirs": plain_dirs,
            "threads": threads,
            "imports": list(modules),
        },
        tune_config=tune.TuneConfig(
            max_concurrent_trials=workers if workers > 1 else None,
            trial_dirname_creator=trial_name,
            trial_name_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=f"grid-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str(root / "_ray"),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )
    return tuner.fit()


def _record_trials(
    grid: Any, cells: Sequence[Cell], root: Path, report: OnResult
) -> list[tuple[Cell, str]]:
    """Write each trial's result where this machine can read it (a cluster without a
    shared folder wrote it on another node); the failed trials."""
    failures: list[tuple[Cell, str]] = []
    by_key = {_key(cell.to_dict()): cell for cell in cells}
    for trial in grid:
        cell = by_key[_key(trial.config["cell"])]
        if trial.error is not None:
            failures.append((cell, _first_line(trial.error)))
            continue
        result = json.loads(trial.metrics["result_json"])
        path = cell.folder(root) / RESULT_FILE
        if read_result(cell, root) is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, json.dumps(result, indent=2) + "\n")
        report(cell, result)
    return failures
