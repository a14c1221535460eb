"""Soft sharing: MMoE, CGC/PLE, cross-stitch and task-attention blocks, their defining
properties, any number of inputs and tasks, every method training them, export,
diagnostics and their plot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from multitask_mnist import presets
from multitask_mnist.data import AugmentedDigitDataset
from multitask_mnist.methods import METHODS
from multitask_mnist.models import (
    Block,
    CrossStitch,
    ExtractionLayer,
    Input,
    MixtureOfExperts,
    MultiTaskNet,
    ProgressiveExtraction,
    TaskAttention,
)
from multitask_mnist.tasks import Task
from multitask_mnist.training import Trainer, TrainerConfig
from multitask_mnist.training.callbacks import TensorBoard
from tests.conftest import SyntheticDigits
from tests.experiments import tiny

SOFT = ("multi_mnist_mmoe", "multi_mnist_cgc", "multi_mnist_cross_stitch", "multi_mnist_mtan")


class Reads(nn.Module):
    """An expert over any inputs: flatten, concatenate, a linear layer."""

    def __init__(self, in_features: int, out_features: int = 6) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, *inputs: Tensor) -> Tensor:
        return torch.tanh(self.linear(torch.cat([x.flatten(1).float() for x in inputs], 1)))


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 6),
    experts=st.integers(1, 4),
    tasks=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_gates_are_distributions_per_sample(
    batch: int, experts: int, tasks: int, seed: int
) -> None:
    torch.manual_seed(seed)
    names = [f"t{i}" for i in range(tasks)]
    mmoe = MixtureOfExperts([Reads(5) for _ in range(experts)], names, 5)
    x = torch.randn(batch, 5) * 10
    for gate in mmoe.gate_weights(x).values():
        assert gate.shape == (batch, experts) and bool((gate >= 0).all())
        assert torch.allclose(gate.sum(-1), torch.ones(batch))


def test_mmoe_with_one_expert_is_hard_sharing_bit_for_bit() -> None:
    torch.manual_seed(0)
    expert = Reads(8)
    mmoe = MixtureOfExperts([expert], ["a", "b"], 8)
    x = torch.randn(16, 8)
    out = mmoe(x)
    assert torch.equal(out["a"], expert(x)) and torch.equal(out["b"], expert(x))


@pytest.mark.parametrize("per_channel", [False, True])
def test_cross_stitch_at_its_start_is_independent_networks_bit_for_bit(per_channel: bool) -> None:
    torch.manual_seed(1)
    columns = {
        task: [nn.Conv2d(1, 4, 3), nn.Sequential(nn.ReLU(), nn.Conv2d(4, 3, 3)), nn.Flatten()]
        for task in ("a", "b", "c")
    }
    stitch = CrossStitch(columns, per_channel=per_channel, channels=[4, 3]).eval()
    x = torch.randn(5, 1, 9, 9)
    out = stitch(x)
    for task, stages in columns.items():
        alone = x
        for stage in stages:
            alone = stage(alone)
        assert torch.equal(out[task], alone), task


def test_cross_stitch_mixes_once_trained_away_from_the_identity() -> None:
    stitch = CrossStitch({t: [nn.Linear(2, 2), nn.Identity()] for t in ("a", "b")})
    with torch.no_grad():
        stitch.alphas[0].copy_(torch.tensor([[[0.5, 0.5], [0.0, 1.0]]]))
    x = torch.randn(3, 2)
    out = stitch(x)
    first = [stitch._column(t)[0](x) for t in ("a", "b")]
    assert torch.allclose(out["a"], 0.5 * first[0] + 0.5 * first[1])
    assert torch.equal(out["b"], 0.0 * first[0] + first[1])


def test_ple_without_shared_experts_is_one_network_per_task() -> None:
    torch.manual_seed(2)
    first = {t: [Reads(4, 5)] for t in ("a", "b")}
    second = {t: [nn.Sequential(nn.Linear(5, 3), nn.Tanh())] for t in ("a", "b")}
    ple = ProgressiveExtraction(
        [ExtractionLayer(first, [], 4, shared_gate=True), ExtractionLayer(second, [], 5)]
    )
    x = torch.randn(7, 4)
    out = ple(x)
    for task in ("a", "b"):
        assert torch.equal(out[task], second[task][0](first[task][0](x)))


def test_cgc_gates_weigh_own_and_shared_experts_and_ple_levels_chain() -> None:
    torch.manual_seed(3)
    cgc = ExtractionLayer(
        {"a": [Reads(4), Reads(4)], "b": [Reads(4)]}, [Reads(4)], 4, shared_gate=True
    )
    out, shared = cgc.extract(
        {"a": (torch.randn(2, 4),), "b": (torch.randn(2, 4),)}, (torch.randn(2, 4),)
    )
    assert out["a"].shape == (2, 6) and shared is not None and shared.shape == (2, 6)
    assert cgc.num_experts == 4
    names = cgc.expert_names()
    assert names["a"] == ["a0", "a1", "shared0"] and names["b"] == ["b0", "shared0"]
    assert names["shared"] == ["a0", "a1", "b0", "shared0"]
    with pytest.raises(ValueError, match="shared_gate=True"):
        ProgressiveExtraction([ExtractionLayer({"a": [Reads(4)]}, [], 4), cgc])


class Open(nn.Module):
    """A mask that lets everything through: logits of 40, whose sigmoid is 1.0 exactly
    in float32."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width

    def forward(self, x: Tensor) -> Tensor:
        return torch.full_like(x[:, : self.width], 40.0)


def test_task_attention_with_open_masks_is_hard_sharing_bit_for_bit() -> None:
    torch.manual_seed(0)
    stages = [nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()), nn.Conv2d(4, 2, 3)]
    attention = TaskAttention(stages, {t: [Open(4), Open(2)] for t in ("a", "b")})
    x = torch.randn(3, 1, 8, 8)
    shared = stages[1](stages[0](x))
    out = attention(x)
    assert torch.equal(out["a"], shared) and torch.equal(out["b"], shared)


@settings(max_examples=20, deadline=None)
@given(batch=st.integers(1, 5), tasks=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_task_attention_masks_lie_in_0_1_with_each_stages_shape(
    batch: int, tasks: int, seed: int
) -> None:
    torch.manual_seed(seed)
    stages = [nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()), nn.Flatten(), nn.Linear(144, 5)]
    masks = {
        f"t{i}": [nn.Conv2d(4, 4, 1), nn.Linear(288, 144), nn.Linear(10, 5)] for i in range(tasks)
    }
    attention = TaskAttention(stages, masks)
    x = torch.randn(batch, 1, 8, 8) * 5
    weights = attention.attention(x)
    shapes = [(batch, 4, 6, 6), (batch, 144), (batch, 5)]
    for stage_masks in weights.values():
        assert [tuple(m.shape) for m in stage_masks] == shapes
        assert all(bool(((m > 0) & (m < 1)).all()) for m in stage_masks)
    out = attention(x)
    for task, stage_masks in weights.items():  # the output is the last mask times h_K
        assert torch.allclose(out[task], stage_masks[-1] * stages[2](stages[1](stages[0](x))))


def test_task_attention_refuses_masks_that_are_not_one_per_stage() -> None:
    with pytest.raises(ValueError, match=r"one mask per stage \(2\) for task 'b', got 1"):
        TaskAttention(
            [nn.Linear(2, 2), nn.Linear(2, 2)],
            {"a": [nn.Linear(2, 2), nn.Linear(4, 2)], "b": [nn.Linear(2, 2)]},
        )
    with pytest.raises(TypeError, match="`stages` to be a list of modules"):
        TaskAttention(nn.Linear(2, 2), {"a": [nn.Linear(2, 2)]})  # type: ignore[arg-type]


def _net(block: nn.Module, inputs: int, tasks: int) -> MultiTaskNet:
    names = [f"t{i}" for i in range(tasks)]
    return MultiTaskNet(
        {
            "soft": Block(block, [f"x{i}" for i in range(inputs)]),
            **{
                name: Block(
                    nn.Linear(6, 3), [f"soft.{name}"], Task(name, "multiclass", num_classes=3)
                )
                for name in names
            },
        },
        [Input(f"x{i}", (i + 1,)) for i in range(inputs)],
    )


@settings(max_examples=20, deadline=None)
@given(
    inputs=st.integers(1, 4),
    tasks=st.integers(1, 4),
    kind=st.sampled_from(["mmoe", "cgc", "stitch", "attention"]),
)
def test_any_number_of_inputs_and_tasks(inputs: int, tasks: int, kind: str) -> None:
    width = sum(range(1, inputs + 1))
    names = [f"t{i}" for i in range(tasks)]
    block: nn.Module
    if kind == "mmoe":
        block = MixtureOfExperts([Reads(width) for _ in range(2)], names, width)
    elif kind == "cgc":
        block = ExtractionLayer({n: [Reads(width)] for n in names}, [Reads(width)], width)
    elif kind == "stitch":
        block = CrossStitch({n: [Reads(width), nn.Linear(6, 6)] for n in names})
    else:
        block = TaskAttention(
            [Reads(width), nn.Linear(6, 6)], {n: [nn.Linear(6, 6), nn.Linear(12, 6)] for n in names}
        )
    net = _net(block, inputs, tasks)
    out = net({f"x{i}": torch.randn(5, i + 1) for i in range(inputs)})
    assert sorted(out) == sorted(names) and all(v.shape == (5, 3) for v in out.values())
    assert net.block_tasks()["soft"] == tuple(names)  # read through "soft.t*": shared


def test_a_read_of_a_missing_entry_names_it() -> None:
    net = MultiTaskNet(
        {
            "soft": Block(MixtureOfExperts([Reads(2)], ["a"], 2), ["x"]),
            "a": Block(nn.Linear(6, 2), ["soft.b"], Task("a", "multiclass", num_classes=2)),
        },
        [Input("x", (2,))],
    )
    with pytest.raises(
        ValueError, match=r"reads 'soft.b', but block 'soft' returned the keys \['a'\]"
    ):
        net({"x": torch.zeros(1, 2)})


#: Every method on every architecture: the methods find the shared parameters (and
#: MGDA-UB the shared representation) from the graph, through the dotted reads.
CASES = [(preset, method) for preset in SOFT for method in METHODS]


@pytest.mark.parametrize(("preset", "method"), CASES)
def test_every_method_trains_the_architectures(preset: str, method: str) -> None:
    torch.manual_seed(0)
    model = presets.get(preset)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train, _ = tiny.load(0, None)  # type: ignore[arg-type]
    data = torch.utils.data.Subset(train, range(64))
    config = TrainerConfig(
        epochs=1, batch_size=32, progress=False, method=method, scheduler="constant"
    )
    history = Trainer(model, config).fit(data)
    assert all(torch.isfinite(torch.tensor(e["train_loss"])) for e in history.epochs)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(before[k], v)]
    assert any(k.startswith("sharing.") for k in changed)  # the shared block trained


def test_gate_usage_is_in_every_epochs_history(tmp_path: Path) -> None:
    torch.manual_seed(0)
    train, _ = tiny.load(0, None)  # type: ignore[arg-type]
    config = TrainerConfig(epochs=2, batch_size=50, progress=False, output_dir=tmp_path)
    callbacks = [] if importlib.util.find_spec("tensorboard") is None else [TensorBoard()]
    history = Trainer(presets.multi_mnist_mmoe(experts=3), config, callbacks=callbacks).fit(train)
    for epoch in history.epochs:
        for task in ("left", "right"):
            usage = [epoch[f"gate_{task}_expert{i}"] for i in range(3)]
            assert sum(usage) == pytest.approx(1.0) and min(usage) >= 0
    assert "gate_left_expert0" in (tmp_path / "history.csv").read_text().splitlines()[0]
    assert "gate_right_expert2" in json.loads((tmp_path / "metrics.json").read_text())["epochs"][0]
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "gates.png").stat().st_size > 0
    if callbacks:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0})
        events.Reload()
        logged = [e.value for e in events.Scalars("gates/right_expert2")]
        assert logged == pytest.approx(history.metric("gate_right_expert2"))


def test_attention_masks_are_in_every_epochs_history(tmp_path: Path) -> None:
    torch.manual_seed(0)
    train, _ = tiny.load(0, None)  # type: ignore[arg-type]
    config = TrainerConfig(epochs=1, batch_size=50, progress=False)
    history = Trainer(presets.multi_mnist_mtan(), config).fit(train)
    means = [history.epochs[0][f"gate_{t}_stage{k}"] for t in ("left", "right") for k in range(3)]
    assert all(0 < mean < 1 for mean in means)


def _sum_gate_gradient(fusion: str) -> Tensor | None:
    torch.manual_seed(0)
    net = presets.mnist_sum_mmoe(fusion=fusion)  # type: ignore[arg-type]
    batch = next(iter(torch.utils.data.DataLoader(AugmentedDigitDataset(SyntheticDigits(8)), 8)))
    out = net(image=batch.image, number=batch.number, targets={"digit": batch.digit})
    if not out["sum"].requires_grad:
        return None  # argmax: the sum's prediction is cut from every parameter
    torch.nn.functional.mse_loss(out["sum"], batch.sum.float()).backward()
    return net.sharing.gates["sum"].weight.grad


def test_the_sum_reaches_its_gate_through_the_expectation_only() -> None:
    grad = _sum_gate_gradient("expectation")
    assert grad is not None and bool(grad.abs().sum() > 0)
    grad = _sum_gate_gradient("argmax")
    assert grad is None or not bool(grad.any())


def test_the_digit_sum_mmoe_trains() -> None:
    torch.manual_seed(0)
    model = presets.mnist_sum_mmoe()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = TrainerConfig(epochs=1, batch_size=16, progress=False, scheduler="constant")
    history = Trainer(model, config).fit(AugmentedDigitDataset(SyntheticDigits(32)))
    assert torch.isfinite(torch.tensor(history.epochs[0]["train_loss"]))
    assert not torch.equal(before["sharing.gates.sum.weight"], model.sharing.gates["sum"].weight)
    assert {"gate_digit_expert0", "gate_sum_expert1"} <= set(history.epochs[0])


@pytest.mark.parametrize("preset", SOFT)
def test_every_architecture_exports(preset: str, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from multitask_mnist.export import export_model

    model = presets.get(preset).eval()
    image = torch.randn(3, 1, 28, 28)
    with torch.inference_mode():
        expected = model({"image": image})
    session = ort.InferenceSession(str(export_model(model, tmp_path / "net.onnx", "onnx")))
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, {"image": image.numpy()}), strict=True))
    for task in ("left", "right"):
        assert torch.allclose(torch.from_numpy(got[task]), expected[task], atol=1e-4)
    rebuilt = presets.from_checkpoint(
        export_model(model, tmp_path / "net.safetensors", "safetensors")
    )
    with torch.inference_mode():
        assert torch.equal(rebuilt({"image": image})["left"], expected["left"])


def test_the_gradient_stop_of_an_argmax_sum_is_found_through_a_dotted_read() -> None:
    assert presets.mnist_sum_mmoe(fusion="argmax").gradient_stops() == [("head", "sharing.sum")]
    assert presets.mnist_sum_mmoe().gradient_stops() == []  # expectation passes gradients
