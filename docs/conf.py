"""Sphinx configuration for multitask_mnist. Builds offline and warning-free (`-W`)."""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))
sys.path.insert(0, str(DOCS.parent))

import multitask_mnist  # noqa: E402

project = "multitask_mnist"
author = "the multitask_mnist authors"
copyright = "2026, the multitask_mnist authors"
release = multitask_mnist.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "myst_parser",
    "_ext.network_table",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
nitpicky = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True
napoleon_custom_sections = ["Shapes"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_default_options = {"members": True, "show-inheritance": False}
html_theme = "furo"  # a theme Python users know; wide code blocks scroll in their own box
html_title = f"multitask_mnist {release}"
html_static_path = ["_static"]
html_css_files = ["wrap.css"]

# The inventories are shipped in docs/_inventories (written by
# docs/_inventories/make_inventories.py), so cross-references to Python, torch and
# torchvision resolve offline, and link to the real documentation online.
# Short names autodoc leaves unresolved in a few signatures, and private type aliases.
nitpick_ignore = [
    ("py:class", name)
    for name in (
        "nn.Module",
        "Tensor",
        "Dataset",
        "multitask_mnist.presets.registry.Builder",
        "OptimizerFactory",
        "SchedulerFactory",
        # torch documents these as torch.optim.Optimizer and LRScheduler; autodoc
        # names them by their defining module, which torch's inventory does not list.
        "torch.optim.optimizer.Optimizer",
        "torch.optim.lr_scheduler.LRScheduler",
        "PIL.Image.Image",  # no Pillow inventory is shipped
        "Path",  # pathlib.Path in a postponed annotation
        "jsonargparse._core.ArgumentParser",  # program.ArgumentParser's base: no inventory
        "T",  # the TypeVar of data.Split
        "multitask_mnist.data.split.T",
    )
] + [("py:obj", "multitask_mnist.data.split.T")]
# The fields of presets.Range, which autodoc prints inside Annotated[...] signatures.
nitpick_ignore_regex = [("py:class", r"(low|high|include_high)=.*")]
intersphinx_mapping = {
    name: (url, str(DOCS / "_inventories" / f"{name}.inv"))
    for name, url in {
        "python": "https://docs.python.org/3",
        "torch": "https://docs.pytorch.org/docs/stable",
        "torchvision": "https://docs.pytorch.org/vision/stable",
    }.items()
}
