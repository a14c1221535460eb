"""``.. network-table:: PRESET``: the layer table of a preset, computed when the docs build."""

from __future__ import annotations

from typing import Any

import torch
from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from torch import nn

from multitask_mnist import presets


def _describe(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        return f"Conv2d({module.in_channels}, {module.out_channels}, {module.kernel_size[0]})"
    if isinstance(module, nn.MaxPool2d):
        return f"MaxPool2d({module.kernel_size}, {module.stride})"
    if isinstance(module, nn.Linear):
        return f"Linear({module.in_features}, {module.out_features})"
    return type(module).__name__


def layer_rows(name: str) -> list[tuple[str, str, str, int]]:
    """(layer, module, output shape of one image, parameters) of each conv, pool, linear layer."""
    model = presets.get(name).eval()
    shapes: dict[str, tuple[int, ...]] = {}
    wanted = (nn.Conv2d, nn.MaxPool2d, nn.Linear)
    handles = []
    for full, module in model.named_modules():
        if isinstance(module, wanted):

            def hook(m: nn.Module, i: Any, out: torch.Tensor, key: str = full) -> None:
                shapes[key] = tuple(out.shape[1:])

            handles.append(module.register_forward_hook(hook))
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28), torch.zeros(1, dtype=torch.long))
    for handle in handles:
        handle.remove()
    rows = []
    for full, module in model.named_modules():
        if isinstance(module, wanted):
            count = sum(p.numel() for p in module.parameters())
            rows.append((full.split(".")[-1], _describe(module), str(shapes[full]), count))
    return rows


class NetworkTable(SphinxDirective):
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        rows = layer_rows(self.arguments[0])
        total = sum(r[3] for r in rows)
        lines = [
            ".. list-table::",
            "   :header-rows: 1",
            "",
            "   * - layer",
            "     - module",
            "     - output shape (one image)",
            "     - parameters",
        ]
        for layer, module, shape, count in [*rows, ("total", "", "", total)]:
            lines += [
                f"   * - ``{layer}``" if module else "   * - **total**",
                f"     - {module}",
                f"     - {shape}",
                f"     - {count:,}",
            ]
        container = nodes.container()
        self.state.nested_parse(StringList(lines), self.content_offset, container)
        return container.children


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("network-table", NetworkTable)
    return {"parallel_read_safe": True}
