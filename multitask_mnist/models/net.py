"""A multi-task network of named inputs and named blocks, returning predictions by task.

A :class:`MultiTaskNet` is a small graph: each :class:`Block` is a module that reads
named inputs or the outputs of earlier blocks, and a block that answers a
:class:`~multitask_mnist.tasks.Task` puts its output under that task's name. A head
may read another head's output, as the sum head reads the digit logits.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from torch import Tensor, nn

from multitask_mnist.errors import InvalidTypeError, InvalidValueError
from multitask_mnist.models.inputs import Input
from multitask_mnist.tasks.losses import label_mask
from multitask_mnist.tasks.task import Task, teacher_forced_key

__all__ = [
    "Block",
    "Input",
    "MultiTaskNet",
    "PresetRecord",
    "source_of",
]


def source_of(read: str) -> str:
    """The input or block a read names: ``"mmoe.left"`` reads block ``mmoe``.

    Example:
        >>> source_of("mmoe.left"), source_of("image")
        ('mmoe', 'image')
    """
    return read.split(".", 1)[0]


def _read(values: Mapping[str, Any], read: str, reader: str) -> Tensor:
    """The value a block reads: an input, a block's output, or one entry of it."""
    if read in values:
        value: Tensor = values[read]
        return value
    source, key = read.split(".", 1)
    output = values[source]
    if not isinstance(output, Mapping) or key not in output:
        keys = sorted(output) if isinstance(output, Mapping) else None
        raise InvalidValueError(
            f"Block {reader!r} reads {read!r}, but block {source!r} returned "
            + (f"the keys {keys}" if keys is not None else f"a {type(output).__name__}")
        )
    entry: Tensor = output[key]
    return entry


class PresetRecord(TypedDict):
    """Which preset built a model, so it can be built again from a checkpoint.

    Attributes:
        name: The registered preset name.
        kwargs: The builder's keyword arguments, plain values only.

    Example:
        >>> from multitask_mnist import presets
        >>> presets.mnist_sum(fusion="expectation").preset
        {'name': 'mnist_sum', 'kwargs': {'fusion': 'expectation'}}
    """

    name: str
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class Block:
    """One module of a :class:`MultiTaskNet` and what it reads.

    Args:
        module: Called with the values named in ``reads``, in order.
        reads: Names of model inputs or of earlier blocks; ``"block.key"`` reads one
            entry of an earlier block that returns a mapping (a soft-sharing block such
            as :class:`~multitask_mnist.models.MixtureOfExperts` returns one
            representation per task).
        task: The task this block's output predicts, or ``None`` for a shared
            encoder whose output only other blocks read.
        teacher: The name of another task whose *true label* the module receives as
            an extra last argument in training, when the model is given targets. The
            module then returns ``(prediction, teacher_forced_prediction)``; the
            second, the module applied to the true label, joins the task's loss over
            the samples that have both labels. The sum head is taught this way with
            the true digit (see :meth:`~multitask_mnist.models.ScalarFusionHead.forward`).
        fast: Train this block at the Trainer's ``head_lr_scale`` times the learning
            rate, without weight decay (the small fusion head of ``mnist_sum``).

    Example:
        >>> from multitask_mnist.tasks import Task
        >>> Block(nn.Linear(4, 1), reads=["features"], task=Task("size", "regression")).reads
        ('features',)
    """

    module: nn.Module
    reads: Sequence[str]
    task: Task | None = None
    teacher: str | None = None
    fast: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.module, nn.Module):
            raise InvalidTypeError(
                f"Expected `module` to be an nn.Module, got {type(self.module).__name__}"
            )
        if isinstance(self.reads, str) or not self.reads:
            raise InvalidValueError(
                f"Expected `reads` to be a non-empty list of names, got {self.reads!r}"
            )
        object.__setattr__(self, "reads", tuple(self.reads))
        if self.task is not None and not isinstance(self.task, Task):
            raise InvalidTypeError(f"Expected `task` to be a Task or None, got {self.task!r}")
        if self.teacher is not None and self.task is None:
            raise InvalidValueError("A block with a `teacher` must predict a `task`")


class MultiTaskNet(nn.Module):
    """Named inputs in; a prediction per task out, through a graph of named blocks.

    Each block's module is registered under the block's name, so its parameters are
    named ``{block}.{parameter}``. Blocks run in the order given; each reads model
    inputs or earlier blocks. Inputs are checked at the boundary with one batched
    test each, so a wrong tensor gets an error naming it instead of a shape error
    from inside a layer.

    Args:
        blocks: ``{name: Block}``, in the order they run.
        inputs: The model's inputs.

    Shapes:
        ``forward(inputs, targets=None)``: ``inputs`` ``{name: (B, *shape)}`` (or the
        tensors in declared order, or keywords) ->
        ``{task: prediction}``, ``(B, C)`` logits for a multiclass task, ``(B,)`` for
        a binary or a regression task. With ``targets`` (``{task: (B,)}``, as the
        Trainer passes in training), a block with a ``teacher`` also adds its
        teacher-forced prediction under
        :func:`~multitask_mnist.tasks.teacher_forced_key`.

    Raises:
        ValueError: A name used twice, a block reading a name that no input or earlier
            block defines, a teacher that is not a task, two blocks for one task, no
            task at all, or a block name the module cannot take.

    Example:
        >>> import torch
        >>> from multitask_mnist.tasks import Task
        >>> net = MultiTaskNet(
        ...     {"encoder": Block(nn.Flatten(), ["image"]),
        ...      "digit": Block(nn.Linear(4, 10), ["encoder"],
        ...                     Task("digit", "multiclass", num_classes=10))},
        ...     [Input("image", (1, 2, 2))])
        >>> net({"image": torch.zeros(3, 1, 2, 2)})["digit"].shape
        torch.Size([3, 10])
    """

    def __init__(self, blocks: Mapping[str, Block], inputs: Sequence[Input]) -> None:
        super().__init__()
        self.inputs: dict[str, Input] = {}
        for spec in inputs:
            if not isinstance(spec, Input):
                raise InvalidTypeError(f"Expected each input to be an Input, got {spec!r}")
            if spec.name == "targets":
                raise InvalidValueError(
                    "The input name 'targets' is reserved for forward(targets=...)"
                )
            if spec.name in self.inputs:
                raise InvalidValueError(f"Two inputs are named {spec.name!r}")
            self.inputs[spec.name] = spec
        if not self.inputs:
            raise InvalidValueError("Expected at least one input, got none")
        self._blocks: dict[str, Block] = {}
        for name, block in blocks.items():
            self._add_block(name, block)
        self.tasks: tuple[Task, ...] = tuple(
            b.task for b in self._blocks.values() if b.task is not None
        )
        if not self.tasks:
            raise InvalidValueError("Expected at least one block with a `task`, got none")
        names = [task.name for task in self.tasks]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise InvalidValueError(
                f"Two blocks predict task {twice[0]!r}; give each task one block"
            )
        #: ``{task: teacher task}`` for the teacher-forced blocks.
        self.teachers: dict[str, str] = {}
        for block in self._blocks.values():
            if block.teacher is not None and block.task is not None:
                if block.teacher not in names:
                    raise InvalidValueError(
                        f"Block of task {block.task.name!r} has teacher {block.teacher!r}, "
                        f"which is not a task; the tasks are {', '.join(map(repr, names))}"
                    )
                self.teachers[block.task.name] = block.teacher
        #: Set by the preset builders; ``None`` for a network built by hand.
        self.preset: PresetRecord | None = None

    def _add_block(self, name: str, block: Block) -> None:
        if not isinstance(block, Block):
            raise InvalidTypeError(
                f"Expected block {name!r} to be a Block, got {type(block).__name__}"
            )
        if not isinstance(name, str) or not name.isidentifier():
            raise InvalidValueError(f"Expected a block name such as 'trunk', got {name!r}")
        if name in self.inputs or name in self._blocks:
            raise InvalidValueError(
                f"The name {name!r} is used twice; inputs and blocks need their own"
            )
        known = [*self.inputs, *self._blocks]
        for read in block.reads:
            if read not in known and source_of(read) not in self._blocks:
                raise InvalidValueError(
                    f"Block {name!r} reads {read!r}, which is neither an input nor an earlier "
                    f"block; known names: {', '.join(map(repr, known))}"
                )
        try:
            self.add_module(name, block.module)
        except KeyError as error:  # the name of an attribute nn.Module has already
            raise InvalidValueError(f"Cannot name a block {name!r}: {error.args[0]}") from None
        self._blocks[name] = block

    @property
    def blocks(self) -> dict[str, Block]:
        """The blocks by name, in the order they run."""
        return dict(self._blocks)

    @property
    def input_names(self) -> tuple[str, ...]:
        """The names of the inputs, in the order declared."""
        return tuple(self.inputs)

    @property
    def task_names(self) -> tuple[str, ...]:
        """The names of the tasks, in the order of their blocks."""
        return tuple(task.name for task in self.tasks)

    def forward(
        self,
        *args: Tensor | Mapping[str, Tensor],
        targets: Mapping[str, Tensor] | None = None,
        check_values: bool = True,
        **named: Tensor,
    ) -> dict[str, Tensor]:
        """Predict every task; see the class docstring for shapes.

        The inputs come as one mapping ``net({"image": x, "number": n})``, as tensors in
        the order the inputs were declared ``net(x, n)``, or by keyword
        ``net(image=x, number=n)``. Their types and shapes are always checked; their
        values too unless ``check_values=False`` (for inputs checked already, on the
        host before they moved, as the Trainer does: reading a check's result on the
        host waits for the device).
        """
        inputs = self._gather(args, named)
        self.check_inputs(inputs, values=check_values)
        values: dict[str, Tensor] = dict(inputs)
        out: dict[str, Tensor] = {}
        for name, block in self._blocks.items():
            reads = [_read(values, read, name) for read in block.reads]
            module = getattr(self, name)
            if block.teacher is not None and block.task is not None and targets is not None:
                taught = targets[block.teacher]  # a missing label becomes a valid stand-in
                teacher = next(t for t in self.tasks if t.name == block.teacher)
                taught = teacher.fill_missing(taught, label_mask(taught))
                prediction, forced = module(*reads, taught)
                out[teacher_forced_key(block.task.name)] = forced
            else:
                prediction = module(*reads)
            values[name] = prediction
            if block.task is not None:
                out[block.task.name] = prediction
        return out

    def _gather(
        self, args: tuple[Tensor | Mapping[str, Tensor], ...], named: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        """The inputs by name, from a mapping, positional tensors or keywords."""
        if len(args) == 1 and isinstance(args[0], Mapping) and not named:
            return dict(args[0])
        if len(args) > len(self.inputs):
            raise InvalidTypeError(
                f"Expected at most {len(self.inputs)} positional inputs "
                f"({', '.join(self.inputs)}), got {len(args)}"
            )
        inputs: dict[str, Tensor] = {}
        for name, value in zip(self.inputs, args, strict=False):
            if isinstance(value, Mapping):
                raise InvalidTypeError("Pass the inputs as one mapping, or as tensors, not both")
            inputs[name] = value
        twice = sorted(set(inputs) & set(named))
        if twice:
            raise InvalidTypeError(f"Got input {twice[0]!r} both by position and by keyword")
        return inputs | named

    def check_inputs(self, inputs: Mapping[str, Tensor], *, values: bool = True) -> None:
        """Raise ``TypeError``/``ValueError`` naming the input that is missing or wrong
        (with ``values=False``, its type and shape only: see :meth:`Input.check`)."""
        if not isinstance(inputs, Mapping):
            raise InvalidTypeError(
                f"Expected the inputs as a mapping {{name: tensor}} with names "
                f"{', '.join(map(repr, self.inputs))}, got {type(inputs).__name__}"
            )
        missing = [name for name in self.inputs if name not in inputs]
        unknown = sorted(set(inputs) - set(self.inputs))
        if missing or unknown:
            raise InvalidValueError(
                f"Expected the inputs {', '.join(map(repr, self.inputs))}; "
                + (f"missing {', '.join(map(repr, missing))}" if missing else "")
                + ("; " if missing and unknown else "")
                + (f"unknown {', '.join(map(repr, unknown))}" if unknown else "")
            )
        batch: int | None = None
        for name, spec in self.inputs.items():
            spec.check(inputs[name], batch, values=values)
            batch = inputs[name].shape[0] if batch is None else batch

    def block_tasks(self) -> dict[str, tuple[str, ...]]:
        """For each block, the tasks whose predictions depend on it.

        A block that several tasks depend on is shared (the trunk); one that a single
        task depends on belongs to that task (its head).

        Example:
            >>> from multitask_mnist import presets
            >>> presets.mnist_sum().block_tasks()
            {'trunk': ('digit', 'sum'), 'head': ('sum',)}
        """
        readers: dict[str, set[str]] = {name: set() for name in self._blocks}
        for name, block in reversed(self._blocks.items()):
            if block.task is not None:
                readers[name].add(block.task.name)
            for read in block.reads:
                if source_of(read) in readers:
                    readers[source_of(read)] |= readers[name]
        order = self.task_names
        return {name: tuple(t for t in order if t in readers[name]) for name in self._blocks}

    def shared_blocks(self) -> tuple[str, ...]:
        """The blocks that several tasks depend on, in the order they run: where the
        tasks' gradients meet. Every helper that reads sharing from the graph (the
        shared parameters, the shared representation, :meth:`gradient_stops`) starts here.

        Example:
            >>> from multitask_mnist import presets
            >>> presets.mnist_sum().shared_blocks(), presets.multi_mnist_lenet().shared_blocks()
            (('trunk',), ('encoder',))
        """
        return tuple(name for name, tasks in self.block_tasks().items() if len(tasks) > 1)

    def gradient_stops(self) -> list[tuple[str, str]]:
        """Where a task's gradient stops short of the shared blocks.

        A task-specific block whose module has ``passes_gradient`` False (the sum head
        with ``"argmax"`` fusion) sends no gradient back to the shared blocks it reads,
        so its task has a zero gradient there.

        Returns:
            ``(block, shared block it reads)`` pairs, in the order the blocks run.

        Example:
            >>> from multitask_mnist import presets
            >>> presets.mnist_sum(fusion="argmax").gradient_stops()
            [('head', 'trunk')]
            >>> presets.mnist_sum(fusion="expectation").gradient_stops()
            []
        """
        tasks_of, shared = self.block_tasks(), self.shared_blocks()
        return [
            (name, read)
            for name, block in self._blocks.items()
            if not getattr(block.module, "passes_gradient", True) and len(tasks_of[name]) == 1
            for read in block.reads
            if source_of(read) in shared
        ]

    def fast_modules(self) -> list[nn.Module]:
        """The modules of the blocks marked ``fast``."""
        return [getattr(self, name) for name, b in self._blocks.items() if b.fast]

    def diagnostics(self) -> dict[str, float]:
        """What the blocks report about themselves: every block module's own
        ``diagnostics()`` merged (the fusion head's adder certificate, for one).

        Example:
            >>> from multitask_mnist import presets
            >>> presets.mnist_sum().diagnostics()["adder_exact"]
            True
        """
        out: dict[str, float] = {}
        for module in self._block_modules():
            report = getattr(module, "diagnostics", None)
            if callable(report):
                out.update(report())
        return out

    def _block_modules(self) -> Iterator[nn.Module]:
        for name in self._blocks:
            yield getattr(self, name)

    def num_parameters(self) -> int:
        """The number of parameters.

        Example:
            >>> from multitask_mnist import presets
            >>> presets.mnist_sum().num_parameters()
            100461
        """
        return sum(math.prod(p.shape) for p in self.parameters())
