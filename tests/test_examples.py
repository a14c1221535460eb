"""The examples, run as ``python examples/NAME.py ARGS`` would run them, in this process
(no second interpreter importing torch for each), offline."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import Completed, SyntheticDigits, run_script, write_fake_mnist

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def test_custom_dataset_example_trains_on_a_folder_of_pngs(tmp_path: Path) -> None:
    digits = SyntheticDigits(400, seed=3)
    for i in range(len(digits)):
        folder = tmp_path / "digits" / str(int(digits.targets[i]))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(digits.data[i].numpy(), mode="L").save(folder / f"{i}.png")
    result = run_script(
        EXAMPLES / "train_custom_dataset.py",
        str(tmp_path / "digits"),
        "--epochs",
        "4",
        "--batch-size",
        "32",
        "--output-dir",
        str(tmp_path / "run"),
    )
    assert result.returncode == 0, result.stderr
    match = re.search(
        r"^Validation on 80 images: digit ([\d.]+)%, sum ([\d.]+)%$", result.stdout, re.MULTILINE
    )
    assert match, result.stdout
    assert float(match.group(1)) > 50  # chance is 10%
    assert "Validation: loss:" in result.stdout  # the Trainer validated every epoch
    assert (tmp_path / "run" / "last.pt").is_file()


def test_custom_dataset_example_on_an_empty_folder(tmp_path: Path) -> None:
    result = run_script(EXAMPLES / "train_custom_dataset.py", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr == (
        f"train_custom_dataset.py: error: No PNG files under {tmp_path}/<0-9>/\n"
    )


def test_the_documented_example_trains_tests_and_resumes(tmp_path: Path) -> None:
    data = write_fake_mnist(tmp_path / "data", n_train=200, n_test=50)
    command = [
        "--data-dir",
        str(data),
        "--limit",
        "100",
        "--batch-size",
        "50",
        "--output-dir",
        str(tmp_path / "run"),
    ]
    example = EXAMPLES / "train_mnist_sum.py"
    first = run_script(example, *command, "--epochs", "1")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].startswith("Epoch: 1, loss: ") and lines[-3] == "Finished Training"
    assert lines[-2].startswith("Accuracy of the network on the 50 test images: digit ")
    second = run_script(example, *command, "--epochs", "2", "--resume")
    assert second.returncode == 0, second.stderr
    assert [line[:8] for line in second.stdout.splitlines() if line.startswith("Epoch")] == [
        "Epoch: 2"
    ]


def _run_example(name: str, *args: str) -> Completed:
    """Run ``examples/<name>`` offline, with the real MNIST files."""
    return run_script(
        EXAMPLES / name, *args, env={"MULTITASK_MNIST_DATA": os.environ["MULTITASK_MNIST_DATA"]}
    )


def test_the_three_task_example_trains_and_reports_every_task(
    mnist_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    flags = ["--limit", "3000", "--no-progress", "--output-dir", str(out)]
    result = _run_example("train_three_tasks.py", "--epochs", "1", *flags)
    assert result.returncode == 0, result.stderr
    accuracy = dict(re.findall(r"^  (\w+): ([\d.]+)%$", result.stdout, re.MULTILINE))
    assert list(accuracy) == ["digit", "sum", "larger"], result.stdout
    assert float(accuracy["digit"]) > 50 and float(accuracy["sum"]) > 50  # chance: 10%, ~5%
    assert float(accuracy["larger"]) > 60  # always answering "no" scores 55%
    assert "larger Acc:" in result.stdout  # the epoch line names the third task
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"test_larger_accuracy", "test_larger_loss", "test_sum_mae"} <= set(metrics)
    resumed = _run_example("train_three_tasks.py", "--epochs", "2", "--resume", *flags)
    assert resumed.returncode == 0, resumed.stderr
    assert [line[:8] for line in resumed.stdout.splitlines() if line.startswith("Epoch")] == [
        "Epoch: 2"
    ]


def test_the_docs_three_task_program_is_short_and_runs(mnist_root: Path) -> None:
    source = (ROOT / "examples" / "three_tasks_short.py").read_text()
    assert len(source.splitlines()) < 40
    assert "three_tasks_short.py" in (ROOT / "docs" / "your_problem.rst").read_text()
    result = _run_example("three_tasks_short.py")
    assert result.returncode == 0, result.stderr
    accuracy = dict(re.findall(r"^(\w+): ([\d.]+)%$", result.stdout, re.MULTILINE))
    assert list(accuracy) == ["digit", "sum", "larger"], result.stdout
    assert all(float(value) > 60 for value in accuracy.values()), accuracy


def test_the_multi_mnist_example_reports_left_and_right(mnist_root: Path, tmp_path: Path) -> None:
    flags = ["--epochs", "1", "--no-progress", "--output-dir", str(tmp_path)]
    result = _run_example("train_multi_mnist.py", *flags)
    assert result.returncode == 0, result.stderr
    match = re.search(
        r"^MultiMNIST test accuracy on 10,000 images: left ([\d.]+)%, right ([\d.]+)%$",
        result.stdout,
        re.MULTILINE,
    )
    assert match, result.stdout
    assert float(match.group(1)) > 80 and float(match.group(2)) > 80  # chance is 10%


def test_the_multi_mnist_example_takes_a_method_and_task_weights(
    mnist_root: Path, tmp_path: Path
) -> None:
    quick = ["--epochs", "1", "--limit", "3000", "--batch-size", "32", "--no-progress"]
    single = _run_example(
        "train_multi_mnist.py",
        *quick,
        "--loss-weights",
        "left=1",
        "right=0",
        "--output-dir",
        str(tmp_path / "single"),
    )
    assert single.returncode == 0, single.stderr
    metrics = json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert metrics["config"]["loss_weights"] == {"left": 1.0, "right": 0.0}
    assert metrics["test_left_accuracy"] > metrics["test_right_accuracy"] + 20  # right untrained
    method = _run_example(
        "train_multi_mnist.py", *quick, "--method", "pcgrad", "--output-dir", str(tmp_path / "m")
    )
    assert method.returncode == 0, method.stderr
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["config"]["method"] == "pcgrad"
    bad = _run_example("train_multi_mnist.py", "--loss-weights", "left")
    assert bad.returncode == 2 and "expected TASK=WEIGHT pairs such as sum=0.5" in bad.stderr


def test_mnist_addition_learns_the_digits_from_sums_alone(mnist_root: Path, tmp_path: Path) -> None:
    flags = ["--epochs", "1", "--limit", "3000", "--no-progress", "--output-dir", str(tmp_path)]
    result = _run_example("train_mnist_addition.py", *flags)
    assert result.returncode == 0, result.stderr
    match = re.search(
        r"^MNIST-addition \(N=1\): test sum accuracy ([\d.]+)% on 5,000 sums; digit accuracy "
        r"([\d.]+)% on 10,000 MNIST test images",
        result.stdout,
        re.MULTILINE,
    )
    assert match, result.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test_sum_accuracy"] == pytest.approx(float(match.group(1)), abs=0.01)
    assert metrics["test_digit_accuracy"] == pytest.approx(float(match.group(2)), abs=0.01)
    # 3,000 sums, no digit label: the classifier reads digits far above chance (10%)
    assert metrics["test_digit_accuracy"] > 50 and metrics["test_sum_accuracy"] > 30
    assert metrics["config"]["digits"] == 1


def test_mnist_addition_of_fifteen_digit_numbers_runs_on_digit_labels(
    mnist_root: Path, tmp_path: Path
) -> None:
    flags = ["--digits", "15", "--epochs", "1", "--limit", "100", "--batch-size", "4"]
    result = _run_example(
        "train_mnist_addition.py", *flags, "--no-progress", "--output-dir", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    assert re.search(
        r"^MNIST-addition \(N=15\): test sum accuracy [\d.]+% on 333 sums",
        result.stdout,
        re.MULTILINE,
    ), result.stdout
    assert json.loads((tmp_path / "metrics.json").read_text())["config"]["digits"] == 15


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_mnist(tmp_path_factory.mktemp("mnist"), n_train=200, n_test=50)


def _failure_cases(data: Path, folder: Path) -> dict[str, tuple[list[str], str]]:
    """A user's mistakes and faults, each with the flags that cause it and its message."""
    no_labels = write_fake_mnist(folder / "no-labels", n_train=20, n_test=10)
    (no_labels / "MNIST" / "raw" / "train-labels-idx1-ubyte").unlink()
    a_file = folder / "a-file"
    a_file.write_text("")
    return {
        "batch size 0": (["--batch-size", "0"], "Expected argument `batch_size` to be >= 1, got 0"),
        "epochs 0": (["--epochs", "0"], "Expected argument `epochs` to be >= 1, got 0"),
        "limit 0": (["--limit", "0"], "to hold at least one sample, got 0"),
        "negative lr": (["--lr", "-1"], "Expected argument `lr` to be a finite number >= 0.0"),
        "lr nan": (
            ["--lr", ".nan"],
            "Expected argument `lr` to be a finite number >= 0.0, got nan",
        ),
        "output folder a file": (["--output-dir", str(a_file)], "Cannot write to the output"),
        "labels missing": (["--data-dir", str(no_labels)], "missing: train-labels-idx1-ubyte"),
        "diverging": (["--lr", "1e9"], "The training loss became NaN or infinite at epoch 1"),
    }


@pytest.mark.parametrize(
    "example", ["train_mnist_sum.py", "train_three_tasks.py", "train_multi_mnist.py"]
)
def test_every_mistake_through_an_example_is_one_line(
    example: str, fake_data: Path, tmp_path: Path
) -> None:
    cases = _failure_cases(fake_data, tmp_path)
    if example != "train_multi_mnist.py":  # its network has no argmax head
        cases["gradient method with argmax"] = (
            ["--method", "pcgrad"],
            "Method 'pcgrad' aggregates each task's gradient on the shared blocks, but block "
            "'head' passes none back to 'trunk'",
        )
    if example == "train_mnist_sum.py":  # DigitSumRun checks its limit before the data
        cases["limit 0"] = (["--limit", "0"], "Expected argument `limit` to be >= 1, got 0")
    for name, (flags, message) in cases.items():
        defaults = ["--epochs", "1", "--limit", "100", "--batch-size", "50", "--no-progress"]
        defaults += ["--data-dir", str(fake_data), "--output-dir", str(tmp_path / "run")]
        result = run_script(EXAMPLES / example, *defaults, *flags)
        assert result.returncode == 1, (name, result.stderr)
        [line] = result.stderr.splitlines()
        assert line.startswith(f"{example}: error: ") and message in line, (name, line)
