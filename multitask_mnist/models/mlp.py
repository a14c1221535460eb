"""A small head over several named values: concatenate, then a multilayer perceptron."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from multitask_mnist._validation import check_int
from multitask_mnist.errors import InvalidValueError

__all__ = ["MLPHead"]


class MLPHead(nn.Module):
    """Concatenates its inputs (each flattened to ``(B, n)``, in float32) and applies an MLP.

    The quick way to give a task a head that reads several blocks or inputs (a
    block's ``reads``): logits and a number, features and a vector.

    Args:
        in_features: The total width of the concatenated inputs.
        out_features: The output width; 1 gives ``(B,)`` (a binary logit or a value).
        hidden: The widths of the hidden layers, each followed by ReLU.

    Shapes:
        ``forward(*values)``: each ``(B, ...)`` -> ``(B, out_features)``, or ``(B,)``
        when ``out_features`` is 1.

    Example:
        >>> head = MLPHead(11, hidden=(16,))
        >>> head(torch.zeros(3, 10), torch.tensor([1, 2, 3])).shape
        torch.Size([3])
    """

    def __init__(
        self, in_features: int, out_features: int = 1, hidden: Sequence[int] = (32,)
    ) -> None:
        super().__init__()
        widths = [check_int("in_features", in_features, minimum=1)]
        widths += [check_int("hidden", width, minimum=1) for width in hidden]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.out_features = check_int("out_features", out_features, minimum=1)
        layers.append(nn.Linear(widths[-1], out_features))
        self.mlp = nn.Sequential(*layers)
        self.in_features = in_features

    def forward(self, *values: Tensor) -> Tensor:
        """Concatenate ``values`` and map them to the output; see the class docstring."""
        x = torch.cat([v.reshape(v.shape[0], -1).float() for v in values], dim=1)
        if x.shape[1] != self.in_features:
            raise InvalidValueError(
                f"Expected inputs of {self.in_features} values per sample in all, got {x.shape[1]}"
            )
        with torch.autocast(device_type=x.device.type, enabled=False):  # small: float32
            out: Tensor = self.mlp(x)
        return out.squeeze(1) if self.out_features == 1 else out
