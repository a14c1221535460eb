from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from multitask_mnist import presets

DOCUMENTED = [
    ("input1.weight", (16, 1, 3, 3)),
    ("input1.bias", (16,)),
    ("conv1.weight", (32, 16, 3, 3)),
    ("conv1.bias", (32,)),
    ("conv2.weight", (64, 32, 3, 3)),
    ("conv2.bias", (64,)),
    ("oneconv1.weight", (16, 64, 1, 1)),
    ("oneconv1.bias", (16,)),
    ("conv3.weight", (32, 16, 3, 3)),
    ("conv3.bias", (32,)),
    ("conv4.weight", (64, 32, 3, 3)),
    ("conv4.bias", (64,)),
    ("conv5.weight", (64, 64, 3, 3)),
    ("conv5.bias", (64,)),
    ("conv6.weight", (10, 64, 5, 5)),
    ("conv6.bias", (10,)),
    ("input2.weight", (5, 2)),
    ("input2.bias", (5,)),
    ("layer1.weight", (5, 5)),
    ("layer1.bias", (5,)),
    ("out2.weight", (1, 5)),
    ("out2.bias", (1,)),
]


def test_documented_parameter_table_exactly() -> None:
    net = presets.mnist_sum()
    table = [(name.split(".", 1)[1], tuple(p.shape)) for name, p in net.named_parameters()]
    assert table == DOCUMENTED
    assert sum(p.numel() for p in net.parameters()) == 100_461


def test_documented_layers_in_order() -> None:
    net = presets.mnist_sum()
    convs = [(n, type(m).__name__) for n, m in net.trunk.named_children() if not n.endswith("_act")]
    assert convs == [
        ("input1", "Conv2d"),
        ("conv1", "Conv2d"),
        ("conv2", "Conv2d"),
        ("pool", "MaxPool2d"),
        ("oneconv1", "Conv2d"),
        ("conv3", "Conv2d"),
        ("conv4", "Conv2d"),
        ("conv5", "Conv2d"),
        ("conv6", "Conv2d"),
        ("flatten", "Flatten"),
    ]
    assert isinstance(net.trunk.pool, nn.MaxPool2d) and net.trunk.pool.kernel_size == 2
    assert net.trunk.pool.stride == 2
    acts = [n for n, m in net.trunk.named_children() if isinstance(m, nn.ReLU)]
    assert len(acts) == 7 and "conv6_act" not in acts  # after every conv but the last


def test_repr_from_the_command_line_shows_the_layer_names() -> None:
    code = "from multitask_mnist import presets; print(presets.mnist_sum())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    for name in (
        "input1",
        "conv1",
        "conv2",
        "pool",
        "oneconv1",
        "conv3",
        "conv4",
        "conv5",
        "conv6",
        "input2",
        "layer1",
        "out2",
    ):
        assert f"({name}):" in out.stdout


def test_registry() -> None:
    assert "mnist_sum" in presets.names()
    assert presets.get("mnist_sum", fusion="straight_through").head.fusion == "straight_through"
    assert presets.describe("mnist_sum").startswith("The documented network")


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"^Unknown preset 'resnet'; known presets: .*mnist_sum"):
        presets.get("resnet")


def test_duplicate_registration_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^A preset named 'mnist_sum' is already registered$"):
        presets.register("mnist_sum")(presets.mnist_sum)


def test_conflicting_override_raises() -> None:
    with pytest.raises(
        ValueError, match=r"^Preset 'mnist_sum' pins norm_layer=None; got norm_layer="
    ):
        presets.get("mnist_sum", norm_layer=nn.BatchNorm2d)
    with pytest.raises(
        ValueError, match=r"^Preset 'mnist_sum' pins num_classes=10; got num_classes=5"
    ):
        presets.mnist_sum(num_classes=5)


def test_agreeing_pinned_value_is_accepted() -> None:
    assert presets.mnist_sum(num_classes=10, hidden=(5, 5)).head.num_classes == 10


def test_unknown_override_is_a_type_error() -> None:
    with pytest.raises(
        TypeError, match=r"^mnist_sum\(\) got unexpected keyword argument\(s\): depth$"
    ):
        presets.mnist_sum(depth=3)


def test_from_checkpoint_rebuilds_the_preset_with_its_arguments(tmp_path: Path) -> None:
    from multitask_mnist import AugmentedDigitDataset
    from multitask_mnist.training import Trainer
    from tests.conftest import SyntheticDigits

    torch.manual_seed(0)
    trainer = Trainer(
        presets.mnist_sum(fusion="straight_through"),
        epochs=1,
        device="cpu",
        progress=False,
        output_dir=tmp_path,
    )
    trainer.fit(AugmentedDigitDataset(SyntheticDigits(64)))
    model = presets.from_checkpoint(tmp_path / "last.pt")
    assert model.head.fusion == "straight_through" and not model.training
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key


def test_from_checkpoint_reads_a_format_1_checkpoint(tmp_path: Path) -> None:
    net = presets.mnist_sum(fusion="expectation")
    state = {
        "format": 1,
        "model": net.state_dict(),
        "config": {"preset": "mnist_sum", "preset_kwargs": {"fusion": "expectation"}},
    }
    torch.save(state, tmp_path / "old.pt")
    assert presets.from_checkpoint(tmp_path / "old.pt").head.fusion == "expectation"


def test_from_checkpoint_of_a_hand_built_network(tmp_path: Path) -> None:
    from multitask_mnist.training import CheckpointError

    net = presets.mnist_sum()
    torch.save({"format": 2, "model": net.state_dict(), "preset": None}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match=r"does not say which preset built its network"):
        presets.from_checkpoint(tmp_path / "x.pt")


def test_a_preset_with_non_plain_arguments_records_nothing() -> None:
    assert presets.mnist_sum().preset == {"name": "mnist_sum", "kwargs": {}}
    assert presets.mnist_sum(act_layer=torch.nn.GELU).preset is None
