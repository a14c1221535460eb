from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from multitask_mnist.models import Conv, ConvTrunk, MaxPool


@settings(max_examples=20, deadline=None)
@given(
    channels=st.integers(1, 16),
    kernel=st.integers(1, 5),
    out=st.integers(2, 12),
    size=st.integers(8, 32),
    batch=st.integers(1, 8),
)
def test_global_pool_trunk_shapes(
    channels: int, kernel: int, out: int, size: int, batch: int
) -> None:
    trunk = ConvTrunk(
        [Conv("a", channels, kernel), MaxPool("p", 2), Conv("b", out, 1)],
        input_size=(size, size),
        global_pool=True,
    )
    assert trunk.out_features == out and trunk.input_shape == (1, size, size)
    assert tuple(trunk(torch.randn(batch, 1, size, size)).shape) == (batch, out)


def test_layer_factories_are_placed_by_name() -> None:
    trunk = ConvTrunk(
        [Conv("a", 4, 3, padding=1), Conv("b", 10, 28)],
        act_layer=nn.GELU,
        norm_layer=nn.BatchNorm2d,
        drop_layer=functools.partial(nn.Dropout2d, 0.1),
    )
    names = [name for name, _ in trunk.named_children()]
    assert names == ["a", "a_norm", "a_act", "a_drop", "b", "flatten"]
    assert isinstance(trunk.a_act, nn.GELU) and trunk.a.bias is None and trunk.b.bias is not None


def test_last_layer_must_be_a_conv() -> None:
    with pytest.raises(ValueError, match=r"^Expected argument `layers` to end with a Conv"):
        ConvTrunk([Conv("a", 4, 3), MaxPool("p", 2)])


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^Layer names must be unique and non-empty, got 'a'$"):
        ConvTrunk([Conv("a", 4, 3), Conv("a", 10, 26)])


def test_map_must_end_at_one_pixel() -> None:
    with pytest.raises(ValueError, match=r"^The last layer leaves a 26x26 map; reduce it to 1x1"):
        ConvTrunk([Conv("a", 10, 3)])


def test_layers_may_not_shrink_below_one_pixel() -> None:
    with pytest.raises(ValueError, match=r"^Layer 'a' shrinks the image below 1x1$"):
        ConvTrunk([Conv("a", 10, 29)])
