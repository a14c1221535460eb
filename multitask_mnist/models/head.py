"""The fusion head: joins the digit estimate with scalar side inputs and adds them up."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from multitask_mnist._validation import check_choice, check_int

__all__ = ["FUSION_MODES", "Fusion", "ScalarFusionHead"]

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


class ScalarFusionHead(nn.Module):
    """Adds scalar side inputs to a digit estimate with linear layers and no activation.

    The digit logits are reduced to one estimate (see ``fusion``), joined with the
    side input(s), and passed through ``input2``, ``layer1``, ..., ``out2``: linear
    layers with no activation between them, since addition is linear.

    Each input is centred and scaled to about -1..1 from its known range
    (digit ``0..num_classes-1``, side input ``side_range``), and the output is
    scaled back to the range of the sum. Exact addition is then a weight of about
    one half per input rather than ones on raw 0-9 values, which small layers
    reach quickly and in float32. The head always computes in float32, also under
    autocast, so the adder keeps its precision.

    Args:
        num_classes: Width of the digit logits.
        num_side: Number of scalar side inputs.
        hidden: Widths of the hidden linear layers; ``(5, 5)`` gives ``input2``
            ``Linear(1 + num_side, 5)``, ``layer1`` ``Linear(5, 5)``, ``out2`` ``Linear(5, 1)``.
        fusion: ``"argmax"`` (hard digit; the sum loss sends no gradient to the trunk),
            ``"expectation"`` (softmax mean; differentiable) or ``"straight_through"``
            (hard forward, softmax gradient).
        side_range: ``(low, high)`` of every side input.

    Shapes:
        ``forward(digit_logits, side)``: ``digit_logits`` ``(B, num_classes)``,
        ``side`` ``(B,)`` or ``(B, num_side)`` -> ``(B,)`` float32 sum.

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
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes, minimum=2)
        check_int("num_side", num_side, minimum=1)
        if not hidden:
            raise ValueError("Expected argument `hidden` to name at least one width, got ()")
        for width in hidden:
            check_int("hidden", width, minimum=1)
        low, high = (check_int("side_range", v) for v in side_range)
        if low > high:
            raise ValueError(
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
        digit_mid = digit_half = (num_classes - 1) / 2
        side_mid, side_half = (low + high) / 2, max((high - low) / 2, 1.0)
        center = torch.tensor([digit_mid] + [side_mid] * num_side)
        scale = torch.tensor([digit_half] + [side_half] * num_side)
        # Derived from the configuration, so kept out of the state dict.
        self.register_buffer("in_center", center, persistent=False)
        self.register_buffer("in_scale", scale, persistent=False)
        self.out_center = float(center.sum())
        self.out_scale = float(scale.sum())

    def forward(self, digit_logits: Tensor, side: Tensor) -> Tensor:
        """Return the ``(B,)`` float32 sum of the digit estimate and the side input(s)."""
        with torch.autocast(device_type=digit_logits.device.type, enabled=False):
            digit = digit_estimate(digit_logits, self.fusion)
            side = side.to(torch.float32).reshape(side.shape[0], -1)
            x = torch.cat([digit.unsqueeze(1), side], dim=1)
            x = (x - self.in_center) / self.in_scale
            for name in self._layer_names:
                x = self.get_submodule(name)(x)
            return x.squeeze(1) * self.out_scale + self.out_center

    def extra_repr(self) -> str:
        return f"fusion={self.fusion!r}, side_range={self.side_range}"
