"""Soft sharing: blocks that give each task its own mixture of shared computation.

Hard sharing (one trunk, one head per task) makes every task read the same features.
The blocks here let each task weigh what it reads:

* :class:`MixtureOfExperts`: MMoE (Ma et al., KDD 2018), experts shared by every task
  and one softmax gate per task over them;
* :class:`ExtractionLayer` and :class:`ProgressiveExtraction`: CGC and PLE (Tang et al.,
  RecSys 2020), experts of each task's own plus shared experts, a gate per task over
  its own and the shared ones, and, between levels, the shared experts' own gate over
  all experts;
* :class:`CrossStitch`: cross-stitch units (Misra et al., CVPR 2016), one column of
  layers per task with learned linear mixes of the columns' activations between
  stages;
* :class:`TaskAttention`: task attention after MTAN (Liu et al., CVPR 2019), one shared
  column of stages and a soft mask per task and stage over its features.

Each is one :class:`~multitask_mnist.models.Block` of a
:class:`~multitask_mnist.models.MultiTaskNet` that reads any number of named inputs
(the experts and the first stages receive them all, in order) and returns
``{task: representation}``; a task's head reads its entry as ``"block.task"``. Experts
and stages are any modules: a LeNet encoder, the documented trunk, an MLP.

Gates record how much each task uses each expert, as means over the samples of the
current epoch (:meth:`MixtureOfExperts.diagnostics`), which the Trainer writes into
every epoch's metrics as ``gate_{task}_{expert}`` (task attention: the mean mask,
``gate_{task}_stage{k}``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import torch
from torch import Tensor, nn

from multitask_mnist._validation import check_int
from multitask_mnist.errors import InvalidTypeError, InvalidValueError

__all__ = [
    "CrossStitch",
    "ExtractionLayer",
    "FlattenConcat",
    "MixtureOfExperts",
    "ProgressiveExtraction",
    "TaskAttention",
]


class FlattenConcat(nn.Module):
    """The gates' default input: every input flattened and concatenated.

    Shapes:
        ``(B, *shape_i)`` for each input -> ``(B, sum of prod(shape_i))``.

    Example:
        >>> FlattenConcat()(torch.zeros(2, 1, 3, 3), torch.zeros(2)).shape
        torch.Size([2, 10])
    """

    def forward(self, *inputs: Tensor) -> Tensor:
        """Flatten each ``(B, ...)`` input to ``(B, -1)`` and concatenate them."""
        return torch.cat([x.reshape(x.shape[0], -1).float() for x in inputs], dim=1)


def _modules(
    name: str, modules: Sequence[nn.Module], *, allow_empty: bool = False
) -> nn.ModuleList:
    if isinstance(modules, nn.Module) or not isinstance(modules, Sequence):
        raise InvalidTypeError(f"Expected `{name}` to be a list of modules, got {modules!r}")
    if not modules and not allow_empty:
        raise InvalidValueError(f"Expected `{name}` to hold at least one module, got none")
    for module in modules:
        if not isinstance(module, nn.Module):
            raise InvalidTypeError(
                f"Expected every entry of `{name}` to be an nn.Module, got {type(module).__name__}"
            )
    return nn.ModuleList(modules)


def _tasks(tasks: Sequence[str], name: str = "tasks") -> tuple[str, ...]:
    if isinstance(tasks, str) or not tasks:
        raise InvalidValueError(f"Expected `{name}` to name at least one task, got {tasks!r}")
    if len(set(tasks)) != len(tasks) or not all(
        isinstance(t, str) and t.isidentifier() for t in tasks
    ):
        raise InvalidValueError(
            f"Expected the tasks of `{name}` to be distinct identifiers, got {list(tasks)}"
        )
    return tuple(tasks)


class _GateUsage:
    """Running means of each gate's weights over the samples since the last report."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.count = 0

    def add(self, gates: Mapping[str, Tensor]) -> None:
        with torch.no_grad():
            for name, weights in gates.items():
                total = weights.detach().float().sum(0)
                self.sums[name] = self.sums[name] + total if name in self.sums else total
            self.count += next(iter(gates.values())).shape[0]

    def report(self, names: Mapping[str, Sequence[str]]) -> dict[str, float]:
        out = {
            f"gate_{gate}_{expert}": float(self.sums[gate][i]) / self.count
            for gate, experts in names.items()
            if gate in self.sums
            for i, expert in enumerate(experts)
        }
        self.sums, self.count = {}, 0
        return out


class MixtureOfExperts(nn.Module):
    """Multi-gate Mixture-of-Experts (MMoE; Ma et al., KDD 2018).

    Every expert reads the block's inputs; each task's gate, a linear layer and a
    softmax over the experts, reads them too (through ``gate_input``), and the task's
    representation is the gate-weighted sum of the experts' outputs. With one expert,
    every gate is 1 and MMoE is hard sharing.

    Args:
        experts: The experts, each ``(*inputs) -> (B, *features)``, all of one output
            shape.
        tasks: The tasks, each with a gate and an entry in the output.
        gate_features: The width of ``gate_input``'s output.
        gate_input: ``(*inputs) -> (B, gate_features)``; default :class:`FlattenConcat`.

    Shapes:
        ``(B, ...)`` inputs -> ``{task: (B, *features)}``.

    Raises:
        ValueError: No experts, no tasks, repeated task names, or ``gate_features``
            below 1.
        TypeError: An expert that is not a module.

    Example:
        >>> mmoe = MixtureOfExperts([nn.Linear(4, 3), nn.Linear(4, 3)], ["a", "b"], 4)
        >>> {task: tuple(z.shape) for task, z in mmoe(torch.zeros(5, 4)).items()}
        {'a': (5, 3), 'b': (5, 3)}
    """

    def __init__(
        self,
        experts: Sequence[nn.Module],
        tasks: Sequence[str],
        gate_features: int,
        gate_input: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.experts = _modules("experts", experts)
        self.tasks = _tasks(tasks)
        check_int("gate_features", gate_features, minimum=1)
        self.gate_input = gate_input if gate_input is not None else FlattenConcat()
        self.gates = nn.ModuleDict(
            {task: nn.Linear(gate_features, len(self.experts)) for task in self.tasks}
        )
        self._usage = _GateUsage()

    def gate_weights(self, *inputs: Tensor) -> dict[str, Tensor]:
        """Each task's ``(B, experts)`` gate: a distribution over the experts per sample."""
        features = self.gate_input(*inputs)
        return {
            task: torch.softmax(self.gates[task](features).float(), dim=-1) for task in self.tasks
        }

    def forward(self, *inputs: Tensor) -> dict[str, Tensor]:
        """``{task: gate-weighted sum of the experts' outputs}``."""
        outputs = torch.stack([expert(*inputs) for expert in self.experts], dim=1)
        gates = self.gate_weights(*inputs)
        if self.training:
            self._usage.add(gates)
        return {task: _mix(gates[task], outputs) for task in self.tasks}

    def diagnostics(self) -> dict[str, float]:
        """``gate_{task}_expert{i}``: the mean weight of each task's gate on each expert
        over the training samples since the last call (empty when none); as for
        :meth:`TaskAttention.diagnostics`, every training-mode forward pass counts."""
        names = [f"expert{i}" for i in range(len(self.experts))]
        return self._usage.report({task: names for task in self.tasks})


def _mix(gate: Tensor, outputs: Tensor) -> Tensor:
    """``(B, E)`` weights times ``(B, E, *features)`` outputs, summed over ``E``."""
    weights = gate.reshape(*gate.shape, *([1] * (outputs.dim() - 2))).to(outputs.dtype)
    return (weights * outputs).sum(dim=1)


class ExtractionLayer(nn.Module):
    """Customized Gate Control (CGC; Tang et al., RecSys 2020): one level of PLE.

    Each task has experts of its own; some experts are shared. A task's gate weighs its
    own experts and the shared ones; with ``shared_gate`` (every level of
    :class:`ProgressiveExtraction` but the last), a gate of the shared experts weighs
    all experts into the shared representation the next level's shared experts read.

    Args:
        task_experts: ``{task: experts}``; at least one per task.
        shared_experts: The shared experts (may be empty: then the tasks share nothing,
            and each task's output is its own network's).
        gate_features: The width of ``gate_input``'s output.
        gate_input: ``(*inputs) -> (B, gate_features)``; default :class:`FlattenConcat`.
        shared_gate: Also compute the shared representation (key ``"shared"`` of
            :meth:`extract`'s second value).

    Shapes:
        ``forward(*inputs)``: ``(B, ...)`` inputs -> ``{task: (B, *features)}``.

    Example:
        >>> cgc = ExtractionLayer({"a": [nn.Linear(4, 3)], "b": [nn.Linear(4, 3)]},
        ...                       [nn.Linear(4, 3)], gate_features=4)
        >>> sorted(cgc(torch.zeros(2, 4))), cgc.num_experts
        (['a', 'b'], 3)
    """

    def __init__(
        self,
        task_experts: Mapping[str, Sequence[nn.Module]],
        shared_experts: Sequence[nn.Module],
        gate_features: int,
        gate_input: nn.Module | None = None,
        *,
        shared_gate: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(task_experts, Mapping):
            raise InvalidTypeError(
                f"Expected `task_experts` to map each task to its experts, got {task_experts!r}"
            )
        self.tasks = _tasks(list(task_experts), "task_experts")
        self.task_experts = nn.ModuleDict(
            {task: _modules(f"task_experts[{task!r}]", task_experts[task]) for task in self.tasks}
        )
        self.shared_experts = _modules("shared_experts", shared_experts, allow_empty=True)
        check_int("gate_features", gate_features, minimum=1)
        self.gate_input = gate_input if gate_input is not None else FlattenConcat()
        shared = len(self.shared_experts)
        self.gates = nn.ModuleDict(
            {task: nn.Linear(gate_features, len(self._own(task)) + shared) for task in self.tasks}
        )
        self.shared_gate = nn.Linear(gate_features, self.num_experts) if shared_gate else None
        self._usage = _GateUsage()

    def _own(self, task: str) -> nn.ModuleList:
        return cast(nn.ModuleList, self.task_experts[task])

    @property
    def num_experts(self) -> int:
        """The number of experts (every task's and the shared ones)."""
        return len(self.shared_experts) + sum(
            len(e) for e in (self._own(task) for task in self.tasks)
        )

    def expert_names(self) -> dict[str, list[str]]:
        """The experts each gate weighs, in order: the task's own, then the shared."""
        shared = [f"shared{i}" for i in range(len(self.shared_experts))]
        names = {
            task: [f"{task}{i}" for i in range(len(self._own(task)))] + shared
            for task in self.tasks
        }
        if self.shared_gate is not None:
            names["shared"] = [
                n for task in self.tasks for n in names[task][: -len(shared) or None]
            ]
            names["shared"] += shared
        return names

    def extract(
        self, task_inputs: Mapping[str, Sequence[Tensor]], shared_inputs: Sequence[Tensor]
    ) -> tuple[dict[str, Tensor], Tensor | None]:
        """One level: each task's experts and gate read ``task_inputs[task]``, the shared
        experts (and their gate) read ``shared_inputs``.

        Returns:
            ``({task: representation}, shared representation or None)``.
        """
        shared_out = [expert(*shared_inputs) for expert in self.shared_experts]
        own = {
            task: [expert(*task_inputs[task]) for expert in self._own(task)] for task in self.tasks
        }
        gates = {
            task: torch.softmax(
                self.gates[task](self.gate_input(*task_inputs[task])).float(), dim=-1
            )
            for task in self.tasks
        }
        out = {
            task: _mix(gates[task], torch.stack(own[task] + shared_out, dim=1))
            for task in self.tasks
        }
        shared_rep = None
        if self.shared_gate is not None:
            everything = [z for task in self.tasks for z in own[task]] + shared_out
            gate = torch.softmax(self.shared_gate(self.gate_input(*shared_inputs)).float(), dim=-1)
            gates["shared"] = gate
            shared_rep = _mix(gate, torch.stack(everything, dim=1))
        if self.training:
            self._usage.add(gates)
        return out, shared_rep

    def forward(self, *inputs: Tensor) -> dict[str, Tensor]:
        """Every expert and gate reads the inputs: ``{task: representation}``."""
        out, _ = self.extract({task: inputs for task in self.tasks}, inputs)
        return out

    def diagnostics(self) -> dict[str, float]:
        """``gate_{task}_{expert}`` mean weights since the last call (see the module)."""
        return self._usage.report(self.expert_names())


class ProgressiveExtraction(nn.Module):
    """Progressive Layered Extraction (PLE; Tang et al., RecSys 2020): CGC levels
    stacked, each task's experts reading the task's representation of the level below
    and the shared experts reading the shared representation (the shared experts'
    own gate, over every expert of the level below).

    Args:
        levels: :class:`ExtractionLayer` s, first to last, with the same tasks; every
            level but the last with ``shared_gate=True``.

    Shapes:
        ``(B, ...)`` inputs -> ``{task: (B, *features)}`` of the last level.

    Raises:
        ValueError: No levels, levels of other tasks, or a missing shared gate.

    Example:
        >>> def level(shared_gate):
        ...     return ExtractionLayer({"a": [nn.Linear(4, 4)], "b": [nn.Linear(4, 4)]},
        ...                            [nn.Linear(4, 4)], 4, shared_gate=shared_gate)
        >>> ple = ProgressiveExtraction([level(True), level(False)])
        >>> {k: tuple(v.shape) for k, v in ple(torch.zeros(2, 4)).items()}
        {'a': (2, 4), 'b': (2, 4)}
    """

    def __init__(self, levels: Sequence[ExtractionLayer]) -> None:
        super().__init__()
        if isinstance(levels, nn.Module) or not levels:
            raise InvalidValueError("Expected `levels` to be a non-empty list of ExtractionLayer")
        for i, level in enumerate(levels):
            if not isinstance(level, ExtractionLayer):
                raise InvalidTypeError(
                    f"Expected level {i} to be an ExtractionLayer, got {type(level).__name__}"
                )
            if level.tasks != levels[0].tasks:
                raise InvalidValueError(
                    f"Expected every level to have the tasks {levels[0].tasks}, level {i} has "
                    f"{level.tasks}"
                )
            if i < len(levels) - 1 and level.shared_gate is None:
                raise InvalidValueError(
                    f"Level {i} feeds another level: build it with shared_gate=True"
                )
        self.levels = nn.ModuleList(levels)
        self.tasks = levels[0].tasks

    def forward(self, *inputs: Tensor) -> dict[str, Tensor]:
        """Run the levels; the last level's ``{task: representation}``."""
        task_inputs: dict[str, Sequence[Tensor]] = {task: inputs for task in self.tasks}
        shared_inputs: Sequence[Tensor] = inputs
        out: dict[str, Tensor] = {}
        for level in cast(list[ExtractionLayer], list(self.levels)):
            out, shared = level.extract(task_inputs, shared_inputs)
            task_inputs = {task: (out[task],) for task in self.tasks}
            shared_inputs = (shared,) if shared is not None else ()
        return out

    def diagnostics(self) -> dict[str, float]:
        """Each level's gate usage, as ``level{i}_gate_{task}_{expert}``."""
        return {
            f"level{i}_{key}": value
            for i, level in enumerate(cast(list[ExtractionLayer], list(self.levels)))
            for key, value in level.diagnostics().items()
        }


class CrossStitch(nn.Module):
    """Cross-stitch networks (Misra et al., CVPR 2016): one column of stages per task,
    and after every stage but the last a learned linear mix of the columns' outputs,
    ``x_t <- sum_s alpha[t, s] x_s``.

    The mixes start as the identity, so at initialisation each column computes exactly
    (bit for bit) what it would alone; training learns how much the tasks share.

    Args:
        columns: ``{task: stages}``; every column has the same number of stages, and
            the columns' outputs after each stage have one shape. The first stage reads
            the block's inputs.
        per_channel: One mix per channel (dimension 1 of the stage outputs, as in the
            paper) instead of one for the whole activation.

    Shapes:
        ``(B, ...)`` inputs -> ``{task: (B, *features)}``.

    Raises:
        ValueError: No columns, or columns of different depths.

    Example:
        >>> net = CrossStitch({"a": [nn.Linear(4, 3), nn.Linear(3, 2)],
        ...                    "b": [nn.Linear(4, 3), nn.Linear(3, 2)]})
        >>> {k: tuple(v.shape) for k, v in net(torch.zeros(5, 4)).items()}
        {'a': (5, 2), 'b': (5, 2)}
    """

    def __init__(
        self,
        columns: Mapping[str, Sequence[nn.Module]],
        *,
        per_channel: bool = False,
        channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(columns, Mapping):
            raise InvalidTypeError(f"Expected `columns` to map tasks to stages, got {columns!r}")
        self.tasks = _tasks(list(columns), "columns")
        self.columns = nn.ModuleDict(
            {task: _modules(f"columns[{task!r}]", columns[task]) for task in self.tasks}
        )
        depths = {task: len(self._column(task)) for task in self.tasks}
        if len(set(depths.values())) != 1:
            raise InvalidValueError(f"Expected columns of one depth, got {depths}")
        depth, count = next(iter(depths.values())), len(self.tasks)
        if per_channel and (channels is None or len(channels) != depth - 1):
            raise InvalidValueError(
                f"Expected `channels` to give the channels after each of the {depth - 1} "
                f"mixed stage(s) when per_channel=True, got {channels}"
            )
        widths = list(channels) if per_channel and channels is not None else [1] * (depth - 1)
        self.alphas = nn.ParameterList(
            [nn.Parameter(torch.eye(count).repeat(width, 1, 1)) for width in widths]
        )
        self.per_channel = per_channel

    def _column(self, task: str) -> nn.ModuleList:
        return cast(nn.ModuleList, self.columns[task])

    def forward(self, *inputs: Tensor) -> dict[str, Tensor]:
        """Run the columns stage by stage, mixing between stages."""
        outs = [self._column(task)[0](*inputs) for task in self.tasks]
        for stage, alpha in enumerate(self.alphas, start=1):
            stacked = torch.stack(outs, dim=1)  # (B, T, C, ...)
            outs = [
                self._column(task)[stage](_stitch(alpha, stacked, t, self.per_channel))
                for t, task in enumerate(self.tasks)
            ]
        return dict(zip(self.tasks, outs, strict=True))


def _stitch(alpha: Tensor, stacked: Tensor, target: int, per_channel: bool) -> Tensor:
    """Column ``target``'s input to the next stage: ``sum_s alpha[c, target, s] x_s``.

    The sum runs in a fixed order, one product per column, so an identity mix returns
    the column's own activation exactly."""

    def term(source: int) -> Tensor:
        x = stacked[:, source]
        if per_channel:
            weight = alpha[:, target, source].reshape(1, -1, *([1] * (x.dim() - 2)))
        else:
            weight = alpha[0, target, source]
        return weight.to(x.dtype) * x

    total = term(0)
    for source in range(1, stacked.shape[1]):
        total = total + term(source)
    return total


class TaskAttention(nn.Module):
    """Task attention over a shared network, after MTAN (Liu et al., CVPR 2019).

    One shared column of stages computes ``h_k = stage_k(h_{k-1})`` once for all tasks.
    Each task has a soft mask per stage, ``m = sigmoid(mask(...))`` with the shape of
    ``h_k``, and attends ``a_k = m * h_k``. The first mask reads ``h_1``; each later mask
    reads ``cat([h_k, stage_k(a_{k-1})], dim=1)``: the shared features beside the task's
    own previous attended features carried through the same stage (MTAN carries them
    through a small extractor of its own; here the shared stage does that job, so a
    stack of stages needs no matching extractor). A task's representation is its last
    ``a_K``. The masks cost few parameters; the stages after the first run once more per
    task, on the task's attended features, so a stage with batch statistics
    (BatchNorm) would mix them into its running estimates: use stages without them.

    Args:
        stages: The shared stages; the first reads the block's inputs.
        masks: ``{task: one module per stage}``; the first maps ``h_1`` to logits of
            its shape, each later one maps the concatenation along dimension 1
            (twice the width of ``h_k`` there) to logits of ``h_k``'s shape.

    Shapes:
        ``(B, ...)`` inputs -> ``{task: (B, *features)}`` (the last stage's shape).

    Raises:
        ValueError: No stages, no tasks (``masks`` empty), task names that are not
            distinct identifiers, or a task whose masks are not one per stage.
        TypeError: A stage or a mask that is not a module.

    Example:
        >>> att = TaskAttention(
        ...     [nn.Linear(4, 3), nn.Linear(3, 2)],
        ...     {"a": [nn.Linear(3, 3), nn.Linear(4, 2)], "b": [nn.Linear(3, 3), nn.Linear(4, 2)]},
        ... )
        >>> {task: tuple(z.shape) for task, z in att(torch.zeros(5, 4)).items()}
        {'a': (5, 2), 'b': (5, 2)}
    """

    def __init__(
        self, stages: Sequence[nn.Module], masks: Mapping[str, Sequence[nn.Module]]
    ) -> None:
        super().__init__()
        self.stages = _modules("stages", stages)
        if not isinstance(masks, Mapping):
            raise InvalidTypeError(f"Expected `masks` to map tasks to modules, got {masks!r}")
        self.tasks = _tasks(list(masks), "masks")
        self.masks = nn.ModuleDict(
            {task: _modules(f"masks[{task!r}]", masks[task]) for task in self.tasks}
        )
        for task in self.tasks:
            if len(self._masks(task)) != len(self.stages):
                raise InvalidValueError(
                    f"Expected one mask per stage ({len(self.stages)}) for task {task!r}, "
                    f"got {len(self._masks(task))}"
                )
        self._usage = _GateUsage()

    def _masks(self, task: str) -> nn.ModuleList:
        return cast(nn.ModuleList, self.masks[task])

    def attention(self, *inputs: Tensor) -> dict[str, list[Tensor]]:
        """Each task's masks, stage by stage: ``{task: [sigmoid mask of h_k's shape]}``,
        every value in ``[0, 1]`` (strictly inside unless the sigmoid saturates)."""
        return self._run(*inputs)[1]

    def _run(self, *inputs: Tensor) -> tuple[dict[str, Tensor], dict[str, list[Tensor]]]:
        shared = self.stages[0](*inputs)
        weights = {task: [torch.sigmoid(self._masks(task)[0](shared))] for task in self.tasks}
        attended = {task: weights[task][0].to(shared.dtype) * shared for task in self.tasks}
        for k in range(1, len(self.stages)):
            stage = self.stages[k]
            shared = stage(shared)
            for task in self.tasks:
                mixed = torch.cat([shared, stage(attended[task])], dim=1)
                weight = torch.sigmoid(self._masks(task)[k](mixed))
                weights[task].append(weight)
                attended[task] = weight.to(shared.dtype) * shared
        return attended, weights

    def forward(self, *inputs: Tensor) -> dict[str, Tensor]:
        """``{task: the task's attended features after the last stage}``."""
        attended, weights = self._run(*inputs)
        if self.training:
            self._usage.add(
                {
                    task: torch.stack([w.reshape(w.shape[0], -1).float().mean(1) for w in ws], 1)
                    for task, ws in weights.items()
                }
            )
        return attended

    def diagnostics(self) -> dict[str, float]:
        """``gate_{task}_stage{k}``: the mean of each task's mask at stage ``k`` (counted
        from 0: ``stage0`` masks ``h_1``) over the training samples since the last call
        (1 passes everything; empty when none). Every training-mode forward pass counts,
        so a method that runs the network twice a step counts each sample twice (the
        means are unchanged), and after a resume in mid-epoch the means cover the
        samples since the resume."""
        names = [f"stage{k}" for k in range(len(self.stages))]
        return self._usage.report({task: names for task in self.tasks})
