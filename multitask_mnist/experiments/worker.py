"""A worker process of a comparison: ``python -m multitask_mnist.experiments.worker ROOT
CELL_JSON THREADS [MODULE ...]`` runs one cell
(:func:`~multitask_mnist.experiments.cells.run_cell`) with ``THREADS`` intra-op threads,
after importing the ``MODULE`` s that register benchmarks of the user's own; the data
folders come from the environment.

Exit status: 0 when the cell's ``result.json`` is written, ``128 + signal`` when SIGTERM
or SIGINT stopped it (its checkpoint is written), 1 on any other failure, with one line
on stderr.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

import torch

from multitask_mnist.experiments.cells import Cell, run_cell
from multitask_mnist.experiments.runner import import_modules
from multitask_mnist.training import TrainingInterrupted

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the cell named on the command line; the exit status."""
    root, cell_json, threads, *modules = list(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(int(threads))
    try:
        import_modules(modules)
        run_cell(Cell.from_dict(json.loads(cell_json)), Path(root))
    except TrainingInterrupted as stopped:
        sys.stderr.write(f"{stopped}\n")
        return 128 + stopped.signal_number
    except Exception as error:  # reported by the parent, which names the cell
        traceback.print_exc()  # into the cell's worker.log; the parent shows the last line
        sys.stderr.write(f"{type(error).__name__}: {error}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
