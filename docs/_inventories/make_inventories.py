"""Write the small intersphinx inventories the docs ship, so they build offline.

Each inventory lists only the outside objects our API reference names, with the
page and anchor of their real documentation. Run it after the API starts naming
a new outside type:

    python docs/_inventories/make_inventories.py
"""

from __future__ import annotations

import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (name, role, uri relative to the project's documentation root)
PYTHON = [
    *(
        (n, "class", f"library/functions.html#{n}")
        for n in ("int", "float", "str", "bool", "list", "dict", "tuple", "object", "type")
    ),
    ("None", "data", "library/constants.html#None"),
    *(
        (n, "exception", f"library/exceptions.html#{n}")
        for n in (
            "ValueError",
            "TypeError",
            "RuntimeError",
            "FileNotFoundError",
            "KeyError",
            "OSError",
            "KeyboardInterrupt",
        )
    ),
    *(
        (
            f"typing.{n}",
            "data" if n in ("Any", "Literal") else "class",
            f"library/typing.html#typing.{n}",
        )
        for n in ("Any", "Literal", "NamedTuple")
    ),
    *(
        (f"collections.abc.{n}", "class", f"library/collections.abc.html#collections.abc.{n}")
        for n in ("Callable", "Iterable", "Iterator", "Mapping", "Sequence")
    ),
    ("pathlib.Path", "class", "library/pathlib.html#pathlib.Path"),
    ("os.PathLike", "class", "library/os.html#os.PathLike"),
    ("argparse.ArgumentParser", "class", "library/argparse.html#argparse.ArgumentParser"),
    ("argparse.Namespace", "class", "library/argparse.html#argparse.Namespace"),
    (
        "contextlib.AbstractContextManager",
        "class",
        "library/contextlib.html#contextlib.AbstractContextManager",
    ),
    ("logging", "module", "library/logging.html#module-logging"),
]

TORCH = [
    ("torch.Tensor", "class", "tensors.html#torch.Tensor"),
    ("torch.device", "class", "tensor_attributes.html#torch.device"),
    ("torch.dtype", "class", "tensor_attributes.html#torch.dtype"),
    ("torch.Generator", "class", "generated/torch.Generator.html#torch.Generator"),
    ("torch.load", "function", "generated/torch.load.html#torch.load"),
    ("torch.autocast", "class", "amp.html#torch.autocast"),
    *(
        (f"torch.nn.{n}", "class", f"generated/torch.nn.{n}.html#torch.nn.{n}")
        for n in (
            "Module",
            "Parameter",
            "Conv2d",
            "Linear",
            "MaxPool2d",
            "ReLU",
            "Sequential",
            "BatchNorm2d",
            "Dropout2d",
        )
    ),
    ("torch.nn.modules.module.Module", "class", "generated/torch.nn.Module.html#torch.nn.Module"),
    (
        "torch.nn.modules.container.Sequential",
        "class",
        "generated/torch.nn.Sequential.html#torch.nn.Sequential",
    ),
    ("torch.utils.data.dataset.Dataset", "class", "data.html#torch.utils.data.Dataset"),
    ("torch.optim.Optimizer", "class", "optim.html#torch.optim.Optimizer"),
    (
        "torch.optim.lr_scheduler.LRScheduler",
        "class",
        "generated/torch.optim.lr_scheduler.LRScheduler.html#torch.optim.lr_scheduler.LRScheduler",
    ),
    *(
        (f"torch.utils.data.{n}", "class", f"data.html#torch.utils.data.{n}")
        for n in ("Dataset", "Subset", "DataLoader", "DistributedSampler")
    ),
    (
        "torch.nn.parallel.DistributedDataParallel",
        "class",
        "generated/torch.nn.parallel.DistributedDataParallel.html"
        "#torch.nn.parallel.DistributedDataParallel",
    ),
]

TORCHVISION = [
    (
        "torchvision.datasets.mnist.MNIST",
        "class",
        "generated/torchvision.datasets.MNIST.html#torchvision.datasets.MNIST",
    ),
    (
        "torchvision.datasets.MNIST",
        "class",
        "generated/torchvision.datasets.MNIST.html#torchvision.datasets.MNIST",
    ),
]


def write(name: str, version: str, objects: list[tuple[str, str, str]]) -> Path:
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {name}\n# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    body = "".join(f"{obj} py:{role} 1 {uri} -\n" for obj, role, uri in objects)
    path = HERE / f"{name}.inv"
    path.write_bytes(header.encode() + zlib.compress(body.encode()))
    return path


if __name__ == "__main__":
    write("python", "3", PYTHON)
    write("torch", "stable", TORCH)
    write("torchvision", "stable", TORCHVISION)
