"""The fusion head: joins the digit estimate with scalar side inputs and adds them up."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple, cast, get_args

import torch
from torch import Tensor, nn

from multitask_mnist._validation import check_choice, check_int
from multitask_mnist.errors import InvalidValueError

__all__ = ["EXACT_SLACK", "FUSION_MODES", "AdderCertificate", "Fusion", "ScalarFusionHead"]

Fusion = Literal["argmax", "expectation", "straight_through"]
#: The ways the digit logits are reduced to one digit estimate.
FUSION_MODES: tuple[str, ...] = get_args(Fusion)


def digit_estimate(logits: Tensor, fusion: str) -> Tensor:
    """Reduce ``(B, C)`` logits to a ``(B,)`` float32 estimate of the class index.

    ``argmax`` is the hard class (no gradient); ``expectation`` the softmax-weighted
    mean of ``0..C-1``; ``straight_through`` the hard class forward with the
    expectation's gradient backward.
    """
    if fusion != "expectation":
        hard = logits.argmax(dim=-1).to(torch.float32)
        if fusion == "argmax":
            return hard
    classes = torch.arange(logits.shape[-1], device=logits.device, dtype=torch.float32)
    soft = torch.softmax(logits.float(), dim=-1) @ classes
    if fusion == "expectation":
        return soft
    return hard + (soft - soft.detach())


#: How much margin :meth:`ScalarFusionHead.certificate` asks for beyond zero: far above
#: the float32 rounding of the forward pass (about 1e-6 on sums up to 18).
EXACT_SLACK = 1e-4


def _power_of_two(value: float) -> float:
    """The power of two nearest ``value`` (in log scale): a scale that float32 divides exactly."""
    return float(2.0 ** round(math.log2(value)))


class AdderCertificate(NamedTuple):
    """The adder collapsed to one affine map, and how far it is from rounding wrong.

    The head has no activation, so ``sum = coefficients · inputs + intercept`` for
    inputs ``(digit, side_1, ..., side_k)``. ``max_error`` is the largest
    ``|sum - (digit + side_1 + ... + side_k)|`` over every digit class and every
    whole side value in range; the error is affine, so it peaks at a corner of that
    box. Rounding this map gives the exact sum on the whole grid exactly when
    ``margin = 0.5 - max_error`` is positive; ``exact`` asks for a margin above
    :data:`EXACT_SLACK`, which also covers the float32 rounding of the forward pass.

    Attributes:
        coefficients: ``(1 + num_side,)`` weights of the digit and side inputs.
        intercept: The constant term.
        max_error: Largest distance from the exact sum over the grid.
        margin: ``0.5 - max_error``; how far the map is from rounding a cell wrong.
        exact: ``margin > EXACT_SLACK``: every (digit, side) pair in range rounds to its sum.

    Example:
        >>> cert = ScalarFusionHead().certificate()
        >>> cert.exact, cert.margin, cert.coefficients
        (True, 0.5, (1.0, 1.0))
    """

    coefficients: tuple[float, ...]
    intercept: float
    max_error: float
    margin: float
    exact: bool


class ScalarFusionHead(nn.Module):
    """Adds scalar side inputs to a digit estimate with linear layers and no activation.

    The digit logits are reduced to one estimate (see ``fusion``), joined with the
    side input(s), and passed through ``input2``, ``layer1``, ..., ``out2``: linear
    layers with no activation between them, since addition is linear.

    Each input is centred and scaled to about -1..1 from its known range
    (digit ``0..num_classes-1``, side input ``side_range``), and the output is
    scaled back to the range of the sum. The scales are powers of two, so for whole
    inputs every step is exact in float32. The head always computes in float32, also
    under autocast, so the adder keeps its precision.

    **An exact adder by design.** The layers start as exact addition (see
    :meth:`reset_parameters`): the first unit of ``input2`` computes the scaled sum
    and every later layer passes it through, so ``sum == digit + side`` holds to the
    last bit before any training. In training, :class:`MultiTaskNet` passes the true
    digit, and the head's weights learn only from it (teacher forcing, see
    :meth:`forward`): a wrong digit estimate never pulls them away from addition, and
    at the exact start their loss and gradient are exactly zero. :meth:`certificate`
    checks exactness over the whole input grid at any time.

    Args:
        num_classes: Width of the digit logits.
        num_side: Number of scalar side inputs.
        hidden: Widths of the hidden linear layers; ``(5, 5)`` gives ``input2``
            ``Linear(1 + num_side, 5)``, ``layer1`` ``Linear(5, 5)``, ``out2`` ``Linear(5, 1)``.
        fusion: ``"argmax"`` (hard digit; the sum loss sends no gradient to the trunk),
            ``"expectation"`` (softmax mean; differentiable) or ``"straight_through"``
            (hard forward, softmax gradient).
        side_range: ``(low, high)`` of every side input.
        exact_init: Start as exact addition (the default); ``False`` keeps PyTorch's
            random initialization of the linear layers, from which teacher forcing
            learns addition.

    Shapes:
        ``forward(digit_logits, side, digit=None)``: ``digit_logits``
        ``(B, num_classes)``, ``side`` ``(B,)`` or ``(B, num_side)``, ``digit`` ``(B,)``
        int64 or ``None`` -> ``(B,)`` float32 sum, or the pair (sum, teacher-forced sum).

    Raises:
        TypeError: A size is not an int.
        ValueError: A size below 1, an unknown ``fusion``, or ``low > high``.

    Example:
        >>> import torch
        >>> head = ScalarFusionHead()
        >>> head(torch.randn(4, 10), torch.tensor([0, 3, 9, 1])).shape
        torch.Size([4])
    """

    in_center: Tensor
    in_scale: Tensor

    def __init__(
        self,
        num_classes: int = 10,
        *,
        num_side: int = 1,
        hidden: Sequence[int] = (5, 5),
        fusion: Fusion = "argmax",
        side_range: tuple[int, int] = (0, 9),
        exact_init: bool = True,
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes, minimum=2)
        check_int("num_side", num_side, minimum=1)
        if not hidden:
            raise InvalidValueError("Expected argument `hidden` to name at least one width, got ()")
        for width in hidden:
            check_int("hidden", width, minimum=1)
        low, high = (check_int("side_range", v) for v in side_range)
        if low > high:
            raise InvalidValueError(
                f"Expected `side_range` as (low, high) with low <= high, got {side_range}"
            )
        self.fusion = check_choice("fusion", fusion, FUSION_MODES)
        self.num_classes, self.num_side, self.side_range = num_classes, num_side, (low, high)

        widths = [1 + num_side, *hidden, 1]
        names = ["input2", *(f"layer{i}" for i in range(1, len(hidden))), "out2"]
        # Registered directly, so parameters read `input2.weight`, not `layers.input2.weight`.
        for name, w_in, w_out in zip(names, widths[:-1], widths[1:], strict=True):
            self.add_module(name, nn.Linear(w_in, w_out))
        self._layer_names = tuple(names)
        digit_half = max((num_classes - 1) / 2, 1.0)
        side_half = max((high - low) / 2, 1.0)
        center = torch.tensor([(num_classes - 1) / 2] + [(low + high) / 2] * num_side)
        scale = torch.tensor([_power_of_two(digit_half)] + [_power_of_two(side_half)] * num_side)
        # Derived from the configuration, so kept out of the state dict.
        self.register_buffer("in_center", center, persistent=False)
        self.register_buffer("in_scale", scale, persistent=False)
        self.out_center = float(center.sum())
        self.out_scale = _power_of_two(float(scale.sum()))
        if exact_init:
            self.reset_parameters()

    def _layers(self) -> list[nn.Linear]:
        return [cast(nn.Linear, self.get_submodule(name)) for name in self._layer_names]

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Make the layers exact addition, keeping every other weight as initialized.

        The first unit of the first layer computes ``sum(in_scale * x) / out_scale``
        of the scaled inputs ``x``; each later layer copies that unit through with
        weight one and bias zero, and the output reads it alone. All of these
        weights are powers of two, so for whole inputs the output is ``digit + side``
        exactly in float32. The other units keep their random weights: they add
        nothing now and are free to learn.

        Example:
            >>> import torch
            >>> head = ScalarFusionHead()
            >>> head(torch.eye(10) * 5, torch.arange(10)).tolist()[:4]
            [0.0, 2.0, 4.0, 6.0]
        """
        layers = self._layers()
        first = layers[0]
        first.weight[0].copy_(self.in_scale / self.out_scale)
        first.bias[0] = 0.0
        for layer in layers[1:]:
            layer.weight[0].zero_()
            layer.weight[0, 0] = 1.0
            layer.bias[0] = 0.0

    def _add(self, digit: Tensor, side: Tensor, *, detach_weights: bool = False) -> Tensor:
        x = torch.cat([digit.unsqueeze(1), side], dim=1)
        x = (x - self.in_center) / self.in_scale
        for layer in self._layers():
            if detach_weights:
                x = nn.functional.linear(x, layer.weight.detach(), layer.bias.detach())
            else:
                x = layer(x)
        return x.squeeze(1) * self.out_scale + self.out_center

    def forward(
        self, digit_logits: Tensor, side: Tensor, digit: Tensor | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Add the digit estimate and the side input(s); with ``digit``, also teacher-force.

        Without ``digit``: the ``(B,)`` float32 sum of the digit estimate and the side
        input(s).

        With the true ``digit`` (the Trainer passes it in training): the pair
        ``(sum, adder)``. ``sum`` is the same prediction, computed with the head's
        weights detached, so its loss trains only the trunk (through a
        differentiable fusion). ``adder`` is the head applied to the true digit: its
        loss alone trains the head's weights, so the adder learns from inputs that
        are always right and never shrinks towards a wrong estimate.
        """
        with torch.autocast(device_type=digit_logits.device.type, enabled=False):
            side = side.to(torch.float32).reshape(side.shape[0], -1)
            estimate = digit_estimate(digit_logits, self.fusion)
            if digit is None:
                return self._add(estimate, side)
            adder = self._add(digit.to(torch.float32), side)
            return self._add(estimate, side, detach_weights=True), adder

    @torch.no_grad()
    def certificate(self) -> AdderCertificate:
        """Collapse the layers to one affine map and bound its rounding error.

        Computed in float64 from the weights, over every digit ``0..num_classes-1``
        and every whole side value in ``side_range`` (each side input independently).

        Returns:
            The map's coefficients and intercept, the largest error over the grid,
            the margin ``0.5 - max_error`` and whether it is positive.

        Example:
            >>> head = ScalarFusionHead()
            >>> with torch.no_grad():
            ...     _ = head.out2.weight.mul_(0.9)
            >>> cert = head.certificate()
            >>> cert.exact, round(cert.max_error, 3)
            (False, 0.9)
        """
        weight = torch.eye(1 + self.num_side, dtype=torch.float64)
        bias = torch.zeros(1 + self.num_side, dtype=torch.float64)
        for layer in self._layers():
            w, b = layer.weight.double().cpu(), layer.bias.double().cpu()
            weight, bias = w @ weight, w @ bias + b
        scale, center = self.in_scale.double().cpu(), self.in_center.double().cpu()
        coefficients = weight[0] / scale * self.out_scale
        intercept = (
            float((bias[0] - (weight[0] / scale) @ center) * self.out_scale) + self.out_center
        )
        # The error (map minus exact sum) is affine in the inputs: its largest and
        # smallest values over the box of inputs sit at corners, found per input.
        low, high = self.side_range
        bounds = [(0, self.num_classes - 1)] + [(low, high)] * self.num_side
        top = bottom = intercept
        for coefficient, (lo, hi) in zip(coefficients.tolist(), bounds, strict=True):
            ends = ((coefficient - 1.0) * lo, (coefficient - 1.0) * hi)
            top, bottom = top + max(ends), bottom + min(ends)
        max_error = max(abs(top), abs(bottom))
        margin = 0.5 - max_error
        return AdderCertificate(
            tuple(coefficients.tolist()), intercept, max_error, margin, margin > EXACT_SLACK
        )

    @property
    def passes_gradient(self) -> bool:
        """Whether the sum's gradient reaches the digit logits (not with ``"argmax"``)."""
        return self.fusion != "argmax"

    def diagnostics(self) -> dict[str, float]:
        """``adder_exact`` and ``adder_margin`` of :meth:`certificate`, for reports.

        Example:
            >>> ScalarFusionHead().diagnostics()
            {'adder_exact': True, 'adder_margin': 0.5}
        """
        certificate = self.certificate()
        return {"adder_exact": certificate.exact, "adder_margin": certificate.margin}

    def extra_repr(self) -> str:
        return f"fusion={self.fusion!r}, side_range={self.side_range}"
