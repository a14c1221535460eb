"""The command line, run in this process as a subprocess would run it (``main(argv)``,
its exit status and output), and through real subprocesses where the process itself is
what is tested (the installed script, a training run, start-up imports)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from multitask_mnist import presets
from multitask_mnist.cli import main
from tests.conftest import Completed, run_in_process, run_script, write_fake_mnist

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, data: Path | None = None) -> Completed:
    """``multitask-mnist ARGS`` with MNIST from ``data`` (or none configured)."""
    return run_in_process(main, args, {"MULTITASK_MNIST_DATA": str(data) if data else None})


def _subprocess(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    """``python -m multitask_mnist ARGS`` in a process of its own."""
    env = {**os.environ, "CI": "true", "MULTITASK_MNIST_DATA": str(data)}
    return subprocess.run(
        [sys.executable, "-m", "multitask_mnist", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )


@pytest.fixture(scope="module")
def small_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_mnist(tmp_path_factory.mktemp("mnist"), n_train=300, n_test=100)


@pytest.fixture(scope="module")
def trained(small_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("run")
    result = _subprocess(  # one real run of the module: the other tests run main() here
        "train",
        "--epochs",
        "1",
        "--limit",
        "200",
        "--batch-size",
        "50",
        "--output-dir",
        str(out),
        data=small_mnist,
    )
    assert result.returncode == 0, result.stderr
    return out, result.stdout


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["predict"], ["presets"]])
def test_help(command: list[str]) -> None:
    result = _run(*command, "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: multitask-mnist")


def test_train_prints_the_documented_lines_and_writes_the_run(trained: tuple[Path, str]) -> None:
    out, stdout = trained
    lines = stdout.splitlines()
    assert re.fullmatch(
        r"Epoch: 1, loss: \d+\.\d{4}, Classification Acc: \d+\.\d{2}, Addition Acc: \d+\.\d{2}",
        lines[0],
    ), lines
    assert lines[-3] == "Finished Training"
    assert re.fullmatch(
        r"Accuracy of the network on the 100 test images: digit \d+\.\d{2}%, sum \d+\.\d{2}%",
        lines[-2],
    )
    assert lines[-1] == (
        "Adder: exact on every digit/number pair (margin 0.500); the sum is right on 100.00% "
        "of the images whose digit is right"
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["limit"] == 200 and len(metrics["epochs"]) == 1
    assert "test_digit_accuracy" in metrics and (out / "last.pt").is_file()
    assert metrics["test_adder_exact"] is True and metrics["test_adder_margin"] == 0.5
    assert metrics["test_sum_given_digit_accuracy"] == 100.0
    header = (out / "history.csv").read_text().splitlines()[0].split(",")
    assert {"train_sum_given_digit_accuracy", "adder_exact", "adder_margin"} <= set(header)


def test_evaluate_prints_both_accuracies(trained: tuple[Path, str], small_mnist: Path) -> None:
    out, stdout = trained
    result = _run("evaluate", "--checkpoint", str(out / "last.pt"), "--data-dir", str(small_mnist))
    assert result.returncode == 0, result.stderr
    # same model, same test pairs: the same accuracy line and adder line
    assert result.stdout.splitlines() == stdout.splitlines()[-2:]


@pytest.mark.parametrize("size", [(28, 28), (200, 150)])
def test_predict_on_a_png(trained: tuple[Path, str], tmp_path: Path, size: tuple[int, int]) -> None:
    out, _ = trained
    picture = Image.new("RGB", size, "white")
    picture.paste((0, 0, 0), (size[0] // 3, size[1] // 4, size[0] // 2, 3 * size[1] // 4))
    path = tmp_path / "digit.png"
    picture.save(path)
    result = _run("predict", "--checkpoint", str(out / "last.pt"), str(path), "7")
    assert result.returncode == 0, result.stderr
    match = re.fullmatch(r"digit: (\d), sum: (-?\d+)\n", result.stdout)
    assert match, result.stdout


def test_presets_lists_the_documented_network() -> None:
    result = _run("presets")
    assert result.returncode == 0
    assert re.search(r"^mnist_sum\s+100,461  The documented network", result.stdout, re.M)
    for name in presets.names():  # every preset with its parameter count
        count = f"{presets.get(name).num_parameters():,}"
        assert re.search(rf"^{name}\s+{count}  ", result.stdout, re.M), name


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["train", "--epochs", "many"], 2, "argument --epochs: expected an int, got 'many'"),
        (
            ["train", "--fusion", "sum"],
            2,
            "argument --fusion: expected one of 'argmax', 'expectation', 'straight_through', "
            "got 'sum'",
        ),
        (
            ["train", "--method", "adam"],
            1,
            "Expected argument `method` to be one of 'none', 'uncertainty', 'dwa', 'rlw', "
            "'geometric', 'famo', 'gradnorm', 'mgda_ub', 'upgrad', 'pcgrad', 'mgda', 'cagrad', "
            "'imtl_g', 'aligned_mtl', 'dualproj', 'graddrop', 'nash_mtl', got 'adam'",
        ),
        (["train", "--bogus"], 2, "unrecognized arguments: --bogus"),
        (
            ["train", "--loss-weights", "sum"],
            2,
            "argument --loss-weights: expected TASK=WEIGHT pairs such as sum=0.5",
        ),
        (
            ["train", "--loss-weights", "total=0"],
            1,
            "Unknown task name(s) in `weights`: 'total'; the tasks are 'digit', 'sum'",
        ),
        (["predict", "--checkpoint", "a.pt", "a.png", "x"], 2, "argument NUMBER: expected an int"),
        (["train", "--epochs", "0"], 1, "Expected argument `epochs` to be >= 1, got 0"),
        (["train", "--limit", "0"], 1, "Expected argument `limit` to be >= 1, got 0"),
        (
            ["train", "--preset", "vgg"],
            1,
            "Unknown preset 'vgg'; known presets: mnist_addition, mnist_addition_lenet, mnist_sum",
        ),
        (
            ["train", "--preset", "multi_mnist_lenet"],
            1,
            "Preset 'multi_mnist_lenet' predicts left, right from image; the command line "
            "trains and runs digit + sum networks",
        ),
        (["evaluate", "--checkpoint", "missing.pt"], 1, "Checkpoint not found: missing.pt"),
        (["frobnicate"], 2, "argument command: invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_give_one_line_and_a_nonzero_exit(
    args: list[str], code: int, message: str, small_mnist: Path
) -> None:
    result = _run(*args, data=small_mnist)
    assert result.returncode == code
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_missing_data_is_one_line(tmp_path: Path) -> None:
    result = _run("train", "--data-dir", str(tmp_path), "--epochs", "1")
    assert result.returncode == 1
    assert result.stderr.startswith("multitask-mnist train: error: MNIST not found in ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreadable_checkpoint_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    result = _run("evaluate", "--checkpoint", str(bad))
    assert result.returncode == 1
    assert "is not a readable checkpoint" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_predict_rejects_number_out_of_range(trained: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = trained
    path = tmp_path / "d.png"
    Image.new("L", (28, 28)).save(path)
    result = _run("predict", "--checkpoint", str(out / "last.pt"), str(path), "12")
    assert result.returncode == 1
    assert result.stderr.strip() == "multitask-mnist predict: error: NUMBER must be in 0..9, got 12"


def test_example_script_help() -> None:
    """Declared once: the example's flags are the fields of the two settings classes."""
    import dataclasses

    from multitask_mnist.cli import DigitSumRun
    from multitask_mnist.training import TrainerConfig

    result = run_script(ROOT / "examples" / "train_mnist_sum.py", "--help")
    assert result.returncode == 0
    for settings in (TrainerConfig, DigitSumRun):
        for field in dataclasses.fields(settings):
            assert f"--{field.name.replace('_', '-')}" in result.stdout, field.name
    assert "--no-progress" in result.stdout and "--config" in result.stdout


def test_config_yaml_repeats_the_run(trained: tuple[Path, str]) -> None:
    import yaml

    from multitask_mnist import program
    from multitask_mnist.cli import DigitSumRun, build_parser
    from multitask_mnist.training import TrainerConfig

    out, _ = trained
    recorded = yaml.safe_load((out / "config.yaml").read_text())
    assert (recorded["epochs"], recorded["batch_size"], recorded["limit"]) == (1, 50, 200)
    argv = ["train", "--config", str(out / "config.yaml"), "--epochs", "3"]
    config, run = program.settings_from(
        build_parser().parse_args(argv).train, TrainerConfig, DigitSumRun
    )
    assert config == TrainerConfig.from_dict(recorded).replace(epochs=3)  # later flags win
    assert run == DigitSumRun(limit=200)
    printed = _run(*argv, "--print-config")
    assert printed.returncode == 0, printed.stderr
    assert yaml.safe_load(printed.stdout) == {
        **recorded,
        "epochs": 3,
        "debug": False,
        "loss_strategy": None,
        "processes": 1,  # how to launch, not how to train: not in config.yaml
    }


def test_loss_strategy_is_deprecated_but_still_trains(small_mnist: Path, tmp_path: Path) -> None:
    result = _run(
        "train", "--loss-strategy", "uncertainty", "--epochs", "1", "--limit", "50",
        "--output-dir", str(tmp_path), data=small_mnist,
    )  # fmt: off
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        "WARNING: --loss-strategy is deprecated and goes in 0.3: use --method uncertainty\n"
    )
    assert json.loads((tmp_path / "metrics.json").read_text())["config"]["method"] == "uncertainty"


@pytest.mark.parametrize(
    "flags", [["--method", "famo"], ["--method", "upgrad", "--fusion", "expectation"]]
)
def test_every_kind_of_method_trains_through_the_same_flag(
    flags: list[str], small_mnist: Path, tmp_path: Path
) -> None:
    result = _run(
        "train", *flags, "--epochs", "1", "--limit", "50", "--batch-size", "25",
        "--output-dir", str(tmp_path), data=small_mnist,
    )  # fmt: off
    assert result.returncode == 0, result.stderr
    recorded = json.loads((tmp_path / "metrics.json").read_text())["config"]
    assert recorded["method"] == flags[1]
    assert recorded["resume"] is False


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("multitask-mnist")
    assert script.is_file()
    result = subprocess.run([str(script), "presets"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "mnist_sum" in result.stdout
    assert torch.__version__  # the script ran in this environment


def test_resume_trains_only_the_new_epoch(small_mnist: Path, tmp_path: Path) -> None:
    common = ["--limit", "100", "--batch-size", "50", "--output-dir", str(tmp_path)]
    first = _run("train", "--epochs", "1", *common, data=small_mnist)
    assert first.returncode == 0, first.stderr
    second = _run("train", "--epochs", "2", "--resume", *common, data=small_mnist)
    assert second.returncode == 0, second.stderr
    assert [
        line.split(",")[0] for line in second.stdout.splitlines() if line.startswith("Epoch")
    ] == ["Epoch: 2"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]


def test_output_dir_that_cannot_be_written(small_mnist: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = _run(
        "train",
        "--epochs",
        "1",
        "--limit",
        "50",
        "--output-dir",
        str(blocker / "run"),
        data=small_mnist,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"multitask-mnist train: error: Cannot write to the output folder {blocker / 'run'}: "
    )
    assert len(result.stderr.strip().splitlines()) == 1


class _Payload:
    """Pickles as a call that creates a file: what a hostile checkpoint would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


def test_checkpoint_with_a_pickle_payload_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt"
    torch.save({"model": {}, "x": _Payload(marker)}, evil)
    result = _run("evaluate", "--checkpoint", str(evil))
    assert result.returncode == 1 and not marker.exists()
    assert result.stderr.startswith(f"multitask-mnist evaluate: error: Refused to load {evil}: ")
    assert "(it asks for " in result.stderr and "which could run code" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_checkpoint_of_another_architecture(trained: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = trained
    state = torch.load(out / "last.pt", weights_only=True)
    state["model"]["trunk.conv6.weight"] = torch.zeros(10, 64, 3, 3)
    bad = tmp_path / "other.pt"
    torch.save(state, bad)
    result = _run("evaluate", "--checkpoint", str(bad))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"multitask-mnist evaluate: error: {bad} does not fit this network: layers with other "
        "shapes: trunk.conv6.weight (10, 64, 5, 5) here, (10, 64, 3, 3) there"
    )


def test_diverging_run_stops_with_one_line(small_mnist: Path, tmp_path: Path) -> None:
    result = _run(
        "train",
        "--epochs",
        "1",
        "--limit",
        "200",
        "--batch-size",
        "50",
        "--lr",
        "1e9",
        "--output-dir",
        str(tmp_path),
        data=small_mnist,
    )
    assert result.returncode == 1
    assert re.fullmatch(
        r"multitask-mnist train: error: The training loss became NaN or infinite at epoch 1, "
        r"step \d+; try a lower learning rate \(lr=1e\+09\) or grad_clip\n",
        result.stderr,
    ), result.stderr


def test_train_flags_default_to_the_trainers_defaults() -> None:
    """Declared once: every TrainerConfig field is a flag whose default is the field's."""
    import dataclasses

    from multitask_mnist.cli import build_parser
    from multitask_mnist.training import TrainerConfig

    args = build_parser().parse_args(["train"]).train
    defaults = TrainerConfig()
    for field in dataclasses.fields(TrainerConfig):
        expected = (
            Path("runs/mnist_sum") if field.name == "output_dir" else getattr(defaults, field.name)
        )
        assert args[field.name] == expected, field.name


def test_no_hand_packed_lines_are_left_behind_fmt_skip() -> None:
    pragma = "fmt: " + "skip"
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("multitask_mnist", "tests", "examples", "benchmarks", "docs")
        for path in (ROOT / folder).rglob("*.py")
        if pragma in path.read_text()
    ]
    assert offenders == []


def test_train_with_digit_labels_on_half_the_images(small_mnist: Path, tmp_path: Path) -> None:
    result = _run(
        "train",
        "--epochs",
        "1",
        "--limit",
        "100",
        "--digit-labels",
        "0.5",
        "--output-dir",
        str(tmp_path),
        data=small_mnist,
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["config"]["digit_labels"] == 0.5
    assert "test_digit_accuracy" in metrics  # the test split keeps every label


def test_gradient_conflict_without_a_method_writes_the_steps(
    small_mnist: Path, tmp_path: Path
) -> None:
    result = _run(
        "train",
        "--epochs",
        "1",
        "--limit",
        "100",
        "--batch-size",
        "25",
        "--fusion",
        "expectation",
        "--gradient-conflict",
        "2",
        "--output-dir",
        str(tmp_path),
        data=small_mnist,
    )
    assert result.returncode == 0, result.stderr
    rows = (tmp_path / "gradient_conflict.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step,grad_norm_digit,grad_norm_sum")
    assert [r.split(",")[:2] for r in rows[1:]] == [["1", "1"], ["1", "3"]]
    history = (tmp_path / "history.csv").read_text().splitlines()[0].split(",")
    assert {"grad_cosine", "effective_weight_digit", "effective_weight_sum"} <= set(history)
    bad = _run("train", "--gradient-conflict", "0", data=small_mnist)
    assert bad.returncode == 1
    assert "Expected argument `every` to be an int >= 1, got 0" in bad.stderr


def test_predict_imports_neither_torchvision_nor_torchjd(
    trained: tuple[Path, str], tmp_path: Path
) -> None:
    """Start-up is most of a prediction's time: torchvision alone imports in about 2 s."""
    out, _ = trained
    picture = Image.new("L", (28, 28), 0)
    picture.paste(255, (12, 4, 16, 24))
    picture.save(tmp_path / "one.png")
    code = (
        "import sys; from multitask_mnist.cli import main; "
        f"main(['predict', '--checkpoint', {str(out / 'last.pt')!r}, "
        f"{str(tmp_path / 'one.png')!r}, '3']); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torchvision', 'torchjd'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


def test_resume_survives_a_damaged_metrics_file(small_mnist: Path, tmp_path: Path) -> None:
    common = ["--limit", "100", "--batch-size", "50", "--output-dir", str(tmp_path)]
    assert _run("train", "--epochs", "1", *common, data=small_mnist).returncode == 0
    (tmp_path / "metrics.json").write_text('{"epochs": [')  # cut short
    resumed = _run("train", "--epochs", "2", "--resume", *common, data=small_mnist)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{tmp_path / 'metrics.json'} is damaged (" in resumed.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())  # written afresh, whole
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2] and "test_sum_accuracy" in metrics


@pytest.mark.parametrize("failing", ["last.pt", "metrics.json"])
def test_a_full_disk_is_one_line_naming_the_file_and_keeps_the_last_checkpoint(
    small_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    import errno

    from multitask_mnist import checkpoint
    from multitask_mnist.training import load_checkpoint

    common = ["--limit", "100", "--batch-size", "50", "--output-dir", str(tmp_path)]
    assert _run("train", "--epochs", "1", *common, data=small_mnist).returncode == 0
    saved = (tmp_path / "last.pt").read_bytes()
    fsync = os.fsync

    def full(descriptor: int) -> None:  # the disk fills up as `failing` is written
        if Path(os.readlink(f"/proc/self/fd/{descriptor}")).name.startswith(f".{failing}."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(descriptor)

    monkeypatch.setattr(checkpoint.os, "fsync", full)
    result = _run("train", "--epochs", "2", "--resume", *common, data=small_mnist)
    assert result.returncode == 1
    *warnings, line = result.stderr.splitlines()  # the schedule's warning, then the error
    assert all(w.startswith("WARNING: ") for w in warnings), result.stderr
    path = tmp_path / failing
    expected = {
        "last.pt": f"Could not write checkpoint {path}: No space left on device; the previous "
        "file, if any, is intact",
        "metrics.json": f"[Errno 28] No space left on device: '{path}'",
    }
    assert line == f"multitask-mnist train: error: {expected[failing]}"
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == (1 if failing == "last.pt" else 2)
    if failing == "last.pt":
        assert (tmp_path / "last.pt").read_bytes() == saved  # untouched
    assert not list(tmp_path.glob(".*.tmp"))  # no half-written file left behind
