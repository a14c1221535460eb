"""ONNX and safetensors export: the exported network answers as the PyTorch one does."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torchvision.datasets import MNIST

from multitask_mnist import presets
from multitask_mnist.cli import EXPORT_FORMATS as CLI_FORMATS
from multitask_mnist.cli import main, mnist_test_split
from multitask_mnist.export import (
    EXPORT_FORMATS,
    ONNX_OPSET,
    SAFETENSORS_FORMAT,
    export_model,
    export_onnx,
    load_safetensors,
    save_safetensors,
)
from multitask_mnist.training import CheckpointError
from tests.conftest import Completed, run_in_process

ROOT = Path(__file__).resolve().parents[1]
#: Images per forward pass when both runtimes read the 10,000 test images (one batch of
#: 10,000 takes several times as long, out of cache).
CHUNK = 500


def _cli(*args: str) -> Completed:
    """``multitask-mnist ARGS``, run in this process."""
    return run_in_process(main, args)


def test_the_command_line_offers_the_exporters_formats() -> None:
    assert CLI_FORMATS == EXPORT_FORMATS == ("onnx", "safetensors")


def test_onnx_answers_as_pytorch_on_the_10000_test_images(
    trained_checkpoint: Path, mnist_test: MNIST, mnist_root: Path, tmp_path: Path
) -> None:
    path = tmp_path / "net.onnx"
    result = _cli(
        "export", "--checkpoint", str(trained_checkpoint), "--format", "onnx", "--output", str(path)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wrote {path} (onnx, preset mnist_sum)\n"

    graph = onnx.load(str(path))
    assert graph.opset_import[0].version == ONNX_OPSET
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = {i.name: i.shape for i in session.get_inputs()}
    assert inputs == {"image": ["batch", 1, 28, 28], "number": ["batch"]}
    assert [o.name for o in session.get_outputs()] == ["digit", "sum"]

    test = mnist_test_split(mnist_root)
    images = torch.stack([test[i].image for i in range(len(test))])
    numbers, digits = test.numbers, mnist_test.targets
    chunks = list(zip(images.split(CHUNK), numbers.split(CHUNK), strict=True))
    answers = [session.run(None, {"image": i.numpy(), "number": n.numpy()}) for i, n in chunks]
    digit_onnx, sum_onnx = (np.concatenate(parts) for parts in zip(*answers, strict=True))
    model = presets.from_checkpoint(trained_checkpoint)
    with torch.inference_mode():
        outs = [model(i, n) for i, n in chunks]
    assert digit_onnx.shape == (10_000, 10) and sum_onnx.shape == (10_000,)
    digit_torch = torch.cat([out["digit"] for out in outs]).argmax(1)
    sum_torch = torch.cat([out["sum"] for out in outs])
    assert torch.equal(torch.from_numpy(digit_onnx).argmax(1), digit_torch)
    assert (torch.from_numpy(sum_onnx) - sum_torch).abs().max() <= 1e-3
    accuracy_onnx = (torch.from_numpy(digit_onnx).argmax(1) == digits).float().mean()
    accuracy_torch = (digit_torch == digits).float().mean()
    assert accuracy_onnx == accuracy_torch > 0.9  # the same, and a trained network's
    sums_onnx = torch.from_numpy(sum_onnx).round().long() == digits + numbers
    assert sums_onnx.float().mean() == (sum_torch.round().long() == digits + numbers).float().mean()


def test_onnx_batch_dimension_is_dynamic(tmp_path: Path) -> None:
    model = presets.mnist_sum(fusion="expectation").eval()
    session = ort.InferenceSession(str(export_onnx(model, tmp_path / "net.onnx")))
    for batch in (1, 3, 64):
        image, number = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
        digit, total = session.run(None, {"image": image.numpy(), "number": number.numpy()})
        with torch.inference_mode():
            expected = model(image, number)
        assert torch.allclose(torch.from_numpy(digit), expected["digit"], atol=1e-5)
        assert torch.allclose(torch.from_numpy(total), expected["sum"], atol=1e-4)


def test_onnx_export_of_another_preset_names_its_inputs_and_tasks(tmp_path: Path) -> None:
    path = export_onnx(presets.multi_mnist_lenet(), tmp_path / "multi.onnx")
    session = ort.InferenceSession(str(path))
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["left", "right"]


def test_export_leaves_the_model_as_it_was(tmp_path: Path) -> None:
    model = presets.mnist_sum().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_onnx(model, tmp_path / "net.onnx")
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_safetensors_round_trip_rebuilds_the_network_from_the_file_alone(
    trained_checkpoint: Path, tmp_path: Path
) -> None:
    path = tmp_path / "net.safetensors"
    result = _cli(
        "export",
        "--checkpoint",
        str(trained_checkpoint),
        "--format",
        "safetensors",
        "--output",
        str(path),
    )
    assert result.returncode == 0, result.stderr
    # No pickles: an 8-byte header length, then a JSON header naming the preset.
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    assert header["__metadata__"]["preset"] == "mnist_sum"
    assert json.loads(header["__metadata__"]["preset_kwargs"]) == {}
    original = presets.from_checkpoint(trained_checkpoint)
    rebuilt = presets.from_checkpoint(path)  # the same entry point as for checkpoints
    assert rebuilt.preset == original.preset and not rebuilt.training
    assert original.state_dict().keys() == rebuilt.state_dict().keys()
    for key, value in original.state_dict().items():
        assert torch.equal(value, rebuilt.state_dict()[key]), key
    image, number = torch.randn(4, 1, 28, 28), torch.tensor([0, 3, 7, 9])
    with torch.inference_mode():
        assert torch.equal(original(image, number)["sum"], rebuilt(image, number)["sum"])


def test_safetensors_keeps_the_presets_arguments(tmp_path: Path) -> None:
    model = presets.mnist_sum(fusion="expectation")
    rebuilt = load_safetensors(save_safetensors(model, tmp_path / "net.safetensors"))
    assert rebuilt.preset == {"name": "mnist_sum", "kwargs": {"fusion": "expectation"}}


def test_safetensors_without_our_metadata_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="does not say which preset built its network"):
        presets.from_checkpoint(path)
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"format": "x/9", "preset": "mnist_sum"})
    with pytest.raises(CheckpointError) as refused:
        presets.from_checkpoint(other)
    assert str(refused.value) == (
        f"{other} names preset 'mnist_sum' but has weights format 'x/9' in its metadata; this "
        f"version reads format {SAFETENSORS_FORMAT!r}, as multitask_mnist.export.save_safetensors "
        "writes it"
    )
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="is not a readable safetensors file"):
        load_safetensors(tmp_path / "junk.safetensors")


def test_safetensors_needs_a_preset_built_network(tmp_path: Path) -> None:
    model = presets.mnist_sum()
    model.preset = None
    with pytest.raises(ValueError, match=r"^Expected a network built by a preset"):
        save_safetensors(model, tmp_path / "net.safetensors")


def test_export_model_checks_the_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^Expected argument `format` to be one of 'onnx'"):
        export_model(presets.mnist_sum(), tmp_path / "x", format="pickle")


def test_export_command_errors_are_one_line(tmp_path: Path) -> None:
    missing = _cli(
        "export", "--checkpoint", str(tmp_path / "no.pt"), "--format", "onnx", "--output", "x"
    )
    assert missing.returncode == 1
    error = "multitask-mnist export: error:"
    assert missing.stderr == f"{error} Checkpoint not found: {tmp_path}/no.pt\n"
    save_safetensors(presets.mnist_sum(), tmp_path / "w.safetensors")
    folder = _cli(
        "export",
        "--checkpoint",
        str(tmp_path / "w.safetensors"),
        "--format",
        "onnx",
        "--output",
        str(tmp_path / "no" / "net.onnx"),
    )
    assert folder.returncode == 1
    assert folder.stderr == f"{error} Output folder not found: {tmp_path}/no\n"
    bad = _cli("export", "--checkpoint", "x.pt", "--format", "pickle", "--output", "x")
    assert bad.returncode == 2 and "invalid choice: 'pickle'" in bad.stderr


def test_a_missing_extra_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_safetensors(presets.mnist_sum(), tmp_path / "w.safetensors")
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if it were not installed
    result = _cli(
        "export",
        "--checkpoint",
        str(tmp_path / "w.safetensors"),
        "--format",
        "onnx",
        "--output",
        str(tmp_path / "n.onnx"),
    )
    assert result.returncode == 1
    assert result.stderr.startswith("multitask-mnist export: error: ONNX export needs onnxscript")
    assert result.stderr.endswith("install it with: pip install 'multitask-mnist[export]'\n")
    assert result.stderr.count("\n") == 1


def test_the_deploying_page_runs_the_onnx_file_without_torch(
    trained_checkpoint: Path, mnist_test: MNIST, tmp_path: Path
) -> None:
    page = (ROOT / "docs" / "deploying.rst").read_text()
    lines = page[page.index("   import numpy as np") :].splitlines()
    end = next(i for i, line in enumerate(lines) if line and not line.startswith("   "))
    code = "\n".join(line.removeprefix("   ") for line in lines[:end]).strip()
    assert len([line for line in code.splitlines() if line]) <= 10
    export_onnx(presets.from_checkpoint(trained_checkpoint), tmp_path / "mnist_sum.onnx")
    index = next(i for i in range(100) if int(mnist_test.targets[i]) == 7)
    from PIL import Image

    Image.fromarray(mnist_test.data[index].numpy()).save(tmp_path / "digit.png")
    blocked = "import sys\nsys.modules['torch'] = sys.modules['multitask_mnist'] = None\n"
    result = subprocess.run(
        [sys.executable, "-c", blocked + code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "digit: 7 sum: 10\n"


#: Records no honest run writes, each with the start of the message that refuses it:
#: absurd sizes, wrong types, strings where module classes are expected, unknown names.
TAMPERED = [
    ("mnist_addition", {"digits": 10**12}, "Expected argument `digits` to be in [1, 1000], got"),
    ("mnist_addition", {"digits": "3"}, "Expected argument `digits` to be an int, got '3'"),
    ("mnist_addition", {"digits": True}, "Expected argument `digits` to be an int, got True"),
    ("mnist_sum", {"act_layer": "ReLU"}, "Expected argument `act_layer` to be callable"),
    ("mnist_sum", {"number_range": "0-9"}, "Expected argument `number_range` to be a tuple of 2"),
    (
        "mnist_sum",
        {"number_range": [0, 10**12]},
        "Expected argument `number_range` to be in [-1000000, 1000000], got",
    ),
    ("mnist_sum", {"fusion": "sum"}, "Expected argument `fusion` to be one of 'argmax'"),
    ("mnist_sum", {"hidden": [10**9, 5]}, "Preset 'mnist_sum' pins hidden=(5, 5)"),
    ("mnist_sum", {"depth": 3}, "mnist_sum() got unexpected keyword argument(s): depth"),
    ("mnist_sum_bn", {"dropout": float("nan")}, "Expected argument `dropout` to be finite"),
    ("multi_mnist_lenet", {"dropout": 7}, "Expected argument `dropout` to be in [0, 1), got 7"),
    ("resnet", {}, "records a preset this library lacks: Unknown preset 'resnet'"),
    ("mnist_sum", [1, 2], "records the arguments of preset 'mnist_sum' as [1, 2]"),
]


def _tampered_files(folder: Path, name: str, kwargs: object) -> list[Path]:
    """The record as a Trainer checkpoint and as safetensors metadata."""
    from safetensors.torch import save_file

    weights = {"w": torch.zeros(2)}
    checkpoint = folder / "tampered.pt"
    torch.save(
        {"format": 3, "model": weights, "preset": {"name": name, "kwargs": kwargs}}, checkpoint
    )
    tensors = folder / "tampered.safetensors"
    metadata = {"format": SAFETENSORS_FORMAT, "preset": name, "preset_kwargs": json.dumps(kwargs)}
    save_file(weights, str(tensors), metadata=metadata)
    return [checkpoint, tensors]


@pytest.mark.parametrize(("name", "kwargs", "message"), TAMPERED)
def test_a_tampered_record_is_refused_at_once_naming_the_file(
    tmp_path: Path, name: str, kwargs: object, message: str
) -> None:
    import resource
    import time

    for path in _tampered_files(tmp_path, name, kwargs):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tic = time.monotonic()
        with pytest.raises(CheckpointError) as refused:
            presets.from_checkpoint(path)
        assert time.monotonic() - tic < 1.0  # refused before anything was built
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 100_000  # KiB
        text = str(refused.value)
        assert text.startswith(f"{path} "), text
        assert message in text, text
        result = _cli("evaluate", "--checkpoint", str(path))  # the command line: one line
        assert result.returncode == 1
        assert result.stderr == f"multitask-mnist evaluate: error: {text}\n"
