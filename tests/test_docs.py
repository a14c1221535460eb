"""The API reference names every public object, and every public object is documented."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

import multitask_mnist

ROOT = Path(__file__).resolve().parents[1]
MODULES = [
    "multitask_mnist.data",
    "multitask_mnist.models",
    "multitask_mnist.losses",
    "multitask_mnist.tasks",
    "multitask_mnist.presets",
    "multitask_mnist.training",
    "multitask_mnist.distributed",
    "multitask_mnist.training.allocator",
    "multitask_mnist.export",
    "multitask_mnist.demo",
    "multitask_mnist.cli",
    "multitask_mnist.errors",
    "multitask_mnist.program",
]


def documented() -> set[str]:
    """``module.name`` of every object an autodoc directive in docs/api.rst names."""
    names, module = set(), ""
    for line in (ROOT / "docs" / "api.rst").read_text().splitlines():
        if m := re.match(r"\.\. currentmodule:: (\S+)", line):
            module = m.group(1)
        elif m := re.match(r"\.\. auto(?:class|function|data|exception):: (\S+)", line):
            names.add(f"{module}.{m.group(1)}")
        elif m := re.match(r"\.\. automodule:: (\S+)", line):
            names.add(m.group(1))
    return names


def public() -> list[tuple[str, Any]]:
    items = []
    for name in MODULES:
        module = importlib.import_module(name)
        items += [(f"{name}.{attr}", getattr(module, attr)) for attr in module.__all__]
    return items


@pytest.mark.parametrize(("qualified", "obj"), public(), ids=[q for q, _ in public()])
def test_every_public_name_is_in_the_api_reference(qualified: str, obj: Any) -> None:
    assert qualified in documented(), f"{qualified} is missing from docs/api.rst"


def test_top_level_names_are_documented_objects() -> None:
    objects = {id(obj) for _, obj in public()}
    for name in multitask_mnist.__all__:
        if name in ("__version__", "presets"):
            continue
        assert id(getattr(multitask_mnist, name)) in objects, name


def test_reference_names_nothing_that_does_not_exist() -> None:
    for qualified in documented():
        module, _, attr = qualified.rpartition(".")
        assert hasattr(importlib.import_module(module), attr), qualified


CALLABLES = [(q, o) for q, o in public() if inspect.isclass(o) or inspect.isfunction(o)]


@pytest.mark.parametrize(("qualified", "obj"), CALLABLES, ids=[q for q, _ in CALLABLES])
def test_public_callables_have_google_docstrings_with_examples(qualified: str, obj: Any) -> None:
    doc = inspect.getdoc(obj) or ""
    assert "Example" in doc, f"{qualified} has no Example section"
    if inspect.isfunction(obj):
        signature = inspect.signature(obj)
        if signature.parameters:
            assert "Args:" in doc, f"{qualified} has no Args section"
        if signature.return_annotation not in ("None", None, inspect.Signature.empty):
            assert "Returns:" in doc, f"{qualified} has no Returns section"


def test_error_catalogue_cites_tests_that_exist() -> None:
    text = (ROOT / "docs" / "errors.rst").read_text()
    cited = re.findall(r"``([\w/]+\.py)::(test_\w+)``", text)
    assert len(cited) >= 30
    for path, name in cited:
        source = (ROOT / "tests" / path).read_text()
        assert re.search(rf"^def {name}\(", source, re.MULTILINE), f"{path}::{name}"
