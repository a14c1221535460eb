"""Two CPU processes under torchrun (gloo): every rank agrees, rank 0 alone prints and writes."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from multitask_mnist import distributed
from multitask_mnist.errors import InvalidValueError
from multitask_mnist.methods import AGGREGATORS, METHODS
from multitask_mnist.training import load_checkpoint
from tests.conftest import write_fake_mnist

pytestmark = pytest.mark.stress  # starts processes: repeated by tests/stress.py

ROOT = Path(__file__).resolve().parents[2]
#: The methods that train on one total (every one but the Jacobian aggregators).
SCALARIZATIONS = [m for m in METHODS if m not in AGGREGATORS]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def _env() -> dict[str, str]:
    return {**os.environ, "CI": "true", "PYTHONPATH": str(ROOT)}


def _run_worker(worker: str, out: Path, argument: str) -> None:
    """Run ``tests/training/<worker> out argument`` on two processes under torchrun."""
    result = subprocess.run(
        [*TORCHRUN, str(ROOT / "tests" / "training" / worker), str(out), argument],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def strategy_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every scalarization trained in turn on two ranks, in one torchrun launch."""
    out = tmp_path_factory.mktemp("strategies")
    _run_worker("ddp_worker.py", out, ",".join(SCALARIZATIONS))
    return out


@pytest.mark.parametrize("strategy", SCALARIZATIONS)
def test_ranks_agree_on_metrics_weights_and_loss_state(strategy_runs: Path, strategy: str) -> None:
    rank0, rank1 = (
        json.loads((strategy_runs / f"{strategy}-rank{r}.json").read_text()) for r in (0, 1)
    )
    assert rank0["world"] == rank1["world"] == 2
    assert rank0["history"] == rank1["history"]  # train metrics reduced over both ranks
    assert rank0["evaluate"] == rank1["evaluate"]
    assert rank0["weights"] == rank1["weights"]  # DDP kept the replicas identical
    assert rank0["loss_state"] == rank1["loss_state"]  # learned loss weights too
    assert rank0["evaluate"]["digit_accuracy"] > 50  # it learned: chance is 10%
    assert all("grad_cosine" in row for row in rank0["history"])  # the probe, on both ranks
    assert [row["epoch"] for row in rank0["history"]] == [1, 2, 3]
    assert load_checkpoint(strategy_runs / strategy / "last.pt")["epoch"] == 3


def test_leaving_the_group_stops_its_threads_while_trainers_live(strategy_runs: Path) -> None:
    """Gloo's worker threads end with cleanup(), every Trainer still alive: none is left
    to free a collective's tensors while the interpreter shuts down (which aborted)."""
    for rank in (0, 1):
        threads = json.loads((strategy_runs / f"threads-rank{rank}.json").read_text())
        assert threads["during"] > threads["before"] == threads["after"], threads


def test_command_line_under_torchrun_prints_each_line_once(tmp_path: Path) -> None:
    data = write_fake_mnist(tmp_path / "data", n_train=200, n_test=50)
    out = tmp_path / "run"
    result = subprocess.run(
        [
            *TORCHRUN,
            "-m",
            "multitask_mnist",
            "train",
            "--epochs",
            "2",
            "--batch-size",
            "25",
            "--output-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**_env(), "MULTITASK_MNIST_DATA": str(data)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert [line.split(",")[0] for line in lines if line.startswith("Epoch")] == [
        "Epoch: 1",
        "Epoch: 2",
    ]
    assert lines.count("Finished Training") == 1
    assert sum(line.startswith("Accuracy of the network on the 50 test") for line in lines) == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 2 and "test_digit_accuracy" in metrics
    assert load_checkpoint(out / "last.pt")["epoch"] == 2
    assert not list(out.glob(".*.tmp"))


def _union_of_the_ranks_batches(method: str) -> dict[str, torch.Tensor]:
    """One process training on each step's union of both ranks' batches (32 = 2 x 16)."""
    from torch.utils.data import DistributedSampler

    from multitask_mnist import AugmentedDigitDataset, presets
    from multitask_mnist.data import as_fields
    from multitask_mnist.methods import create_method
    from multitask_mnist.training import TrainingTask, create_optimizer, create_scheduler
    from multitask_mnist.training.optim import param_groups
    from tests.conftest import SyntheticDigits

    torch.manual_seed(0)
    model = presets.mnist_sum(fusion="expectation")
    task = TrainingTask(model, method=create_method(method, 2)).train()
    data = AugmentedDigitDataset(SyntheticDigits(64))
    data.set_epoch(0)  # the Trainer's first epoch
    orders = []
    for rank in (0, 1):
        sampler = DistributedSampler(data, num_replicas=2, rank=rank, shuffle=True, seed=0)
        sampler.set_epoch(1)
        orders.append(torch.tensor(list(sampler)))
    groups = param_groups(task, lr=3e-3, fast=model.fast_modules(), fast_lr_scale=10.0)
    optimizer = create_optimizer(groups, "adam", lr=3e-3, weight_decay=0.0)
    scheduler = create_scheduler(optimizer, "onecycle", 2)
    for s in range(2):
        index = torch.cat([order[s * 16 : (s + 1) * 16] for order in orders])
        step = task(as_fields(data.get_batch(index)))
        optimizer.zero_grad(set_to_none=True)
        task.method.backward(step)
        optimizer.step()
        scheduler.step()
    return {k: v.detach() for k, v in model.state_dict().items()}


GRADIENT_METHODS = list(AGGREGATORS)


@pytest.fixture(scope="module")
def method_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every gradient method trained in turn on two ranks, in one torchrun launch."""
    out = tmp_path_factory.mktemp("methods")
    _run_worker("ddp_method_worker.py", out, ",".join(GRADIENT_METHODS))
    return out


def test_every_gradient_method_keeps_the_ranks_identical(method_runs: Path) -> None:
    start = _initial_weights()
    for method in GRADIENT_METHODS:
        rank0, rank1 = (torch.load(method_runs / f"{method}-rank{r}.pt") for r in (0, 1))
        for key in rank0:
            assert torch.equal(rank0[key], rank1[key]), (method, key)
            assert torch.isfinite(rank0[key]).all(), (method, key)
        assert any(not torch.equal(rank0[k], start[k]) for k in start), method  # it trained
    # The worker never left the group itself: at exit, it was left and its threads joined.
    assert [(method_runs / f"threads-rank{r}.txt").read_text() for r in (0, 1)] == ["1", "1"]


def test_a_gradient_method_on_two_ranks_equals_one_process_on_the_union(method_runs: Path) -> None:
    rank0 = torch.load(method_runs / "upgrad-rank0.pt")
    union = _union_of_the_ranks_batches("upgrad")
    moved = 0.0
    for key, value in union.items():
        assert torch.allclose(rank0[key], value, atol=1e-5, rtol=1e-4), key
    start = _initial_weights()
    moved = max(float((union[k] - start[k]).abs().max()) for k in start)
    assert moved > 1e-3  # the two steps changed the weights: the comparison means something


def _initial_weights() -> dict[str, torch.Tensor]:
    from multitask_mnist import presets

    torch.manual_seed(0)
    return dict(presets.mnist_sum(fusion="expectation").state_dict())


_REPORTER = """
import json, os, sys
from pathlib import Path
rank = os.environ["RANK"]
Path(sys.argv[1], f"rank{rank}.json").write_text(json.dumps(
    {"world": os.environ["WORLD_SIZE"], "threads": os.environ["OMP_NUM_THREADS"]}))
sys.exit(int(sys.argv[2]) if rank == "1" else 0)
"""


def test_launch_starts_ranks_sharing_the_cores_and_returns_a_failed_ones_status(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "reporter.py"
    script.write_text(_REPORTER)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    handler = signal.getsignal(signal.SIGTERM)
    assert distributed.launch([str(script)], [str(tmp_path), "0"], 2) == 0
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    threads = str(max(1, distributed._usable_cores() // 2))
    assert reports == [{"world": "2", "threads": threads}] * 2
    # This process is left as it was: its environment and its signal handlers.
    assert "OMP_NUM_THREADS" not in os.environ
    assert "TORCHELASTIC_SIGNALS_TO_HANDLE" not in os.environ
    assert signal.getsignal(signal.SIGTERM) == handler
    capfd.readouterr()
    warnings: list[str] = []
    library = logging.getLogger("multitask_mnist")
    listener = logging.Handler()
    listener.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    saved = library.handlers, library.propagate
    library.handlers, library.propagate = [listener], False  # this test's listener alone
    try:
        assert distributed.launch([str(script)], [str(tmp_path), "3"], 2) == 3  # rank 1's
    finally:
        library.handlers, library.propagate = saved
    assert capfd.readouterr().err == ""  # no launcher report
    assert warnings == [
        "process 1 of 2 failed first, with exit status 3; --debug (or "
        "MULTITASK_MNIST_DEBUG=1) shows every process's error"
    ]


def test_launch_keeps_a_thread_count_the_user_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "reporter.py"
    script.write_text(_REPORTER)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert distributed.launch([str(script)], [str(tmp_path), "0"], 2) == 0
    assert json.loads((tmp_path / "rank0.json").read_text())["threads"] == "3"
    assert os.environ["OMP_NUM_THREADS"] == "3"


def test_launch_refuses_fewer_than_two_processes() -> None:
    with pytest.raises(InvalidValueError, match="`processes` to be >= 2 for a launch, got 1"):
        distributed.launch([sys.executable], [], 1)
