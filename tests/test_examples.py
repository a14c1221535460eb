"""The custom-dataset example runs offline on a small folder of PNGs the test writes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.conftest import SyntheticDigits

ROOT = Path(__file__).resolve().parents[1]


def test_custom_dataset_example_trains_on_a_folder_of_pngs(tmp_path: Path) -> None:
    digits = SyntheticDigits(400, seed=3)
    for i in range(len(digits)):
        folder = tmp_path / "digits" / str(int(digits.targets[i]))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(digits.data[i].numpy(), mode="L").save(folder / f"{i}.png")
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "train_custom_dataset.py"),
            str(tmp_path / "digits"),
            "--epochs",
            "4",
            "--batch-size",
            "32",
            "--output-dir",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={"CI": "true", "PATH": ""},
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
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_custom_dataset.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: No PNG files under {tmp_path}/<0-9>/"


def test_the_documented_example_trains_tests_and_resumes(tmp_path: Path) -> None:
    from tests.conftest import write_fake_mnist

    data = write_fake_mnist(tmp_path / "data", n_train=200, n_test=50)
    command = [
        sys.executable,
        str(ROOT / "examples" / "train_mnist_sum.py"),
        "--data-dir",
        str(data),
        "--limit",
        "100",
        "--batch-size",
        "50",
        "--output-dir",
        str(tmp_path / "run"),
    ]
    env = {"CI": "true", "PATH": ""}
    first = subprocess.run([*command, "--epochs", "1"], capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].startswith("Epoch: 1, loss: ") and lines[-3] == "Finished Training"
    assert lines[-2].startswith("Accuracy of the network on the 50 test images: digit ")
    second = subprocess.run(
        [*command, "--epochs", "2", "--resume"], capture_output=True, text=True, env=env
    )
    assert second.returncode == 0, second.stderr
    assert [line[:8] for line in second.stdout.splitlines() if line.startswith("Epoch")] == [
        "Epoch: 2"
    ]
