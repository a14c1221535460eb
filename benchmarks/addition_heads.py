"""Which exact sum head is faster, at which N: the convolution (``SumOfNumbers``) or the
carry chain (``CarryChainSum``), forward and backward, alone and with the papers' LeNet.

Each measurement alternates the heads (A B A B ...) in one process with one thread and
reports the median over rounds, so the ratio holds on a machine whose speed drifts.
Batches are the benchmarks' own: ``max(1, 64 // N)`` sums, about 128 images.

    python benchmarks/addition_heads.py --rounds 15

Prints the table as Markdown and writes it to ``docs/_generated/addition_heads.rst``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _cells import write_table

from multitask_mnist import presets
from multitask_mnist.models import CarryChainSum, SumOfNumbers, digits_of


def _timed(step: Callable[[], None], repeats: int) -> float:
    tic = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - tic) / repeats * 1e3


def _head_steps(digits: int, with_network: bool) -> dict[str, Callable[[], None]]:
    batch = max(1, 64 // digits)
    torch.manual_seed(0)
    totals = torch.randint(0, 2 * 10 ** min(digits, 18) - 1, (batch,))
    written = digits_of(totals, digits + 1) if digits <= 18 else torch.zeros(batch, digits + 1)
    written = written.long()
    steps: dict[str, Callable[[], None]] = {}
    heads: dict[str, tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]]] = {}
    chain = CarryChainSum(digits)
    heads["carry chain"] = (chain, lambda p: chain.negative_log_likelihood(p, written).mean())
    if digits <= presets.MAX_CONVOLUTION_DIGITS:
        convolution = SumOfNumbers(operands=2, digits=digits)
        heads["convolution"] = (
            convolution,
            lambda p: torch.nn.functional.cross_entropy(p, totals),
        )
    for name, (head, loss_of) in heads.items():
        if with_network:
            net = presets.mnist_addition_lenet(digits=digits, head=name.replace(" ", "_"))  # type: ignore[arg-type]
            images = torch.randn(batch, 2 * digits, 1, 28, 28)

            def step(
                net: torch.nn.Module = net,
                images: torch.Tensor = images,
                loss_of: Callable[[torch.Tensor], torch.Tensor] = loss_of,
            ) -> None:
                net.zero_grad(set_to_none=True)
                loss_of(net(images)["sum"]).backward()
        else:
            logits = torch.randn(batch, 2 * digits, 10, requires_grad=True)

            def step(
                head: torch.nn.Module = head,
                logits: torch.Tensor = logits,
                loss_of: Callable[[torch.Tensor], torch.Tensor] = loss_of,
            ) -> None:
                logits.grad = None
                loss_of(head(logits)).backward()

        steps[name] = step
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=20, help="steps per timing")
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "docs/_generated/addition_heads.rst",
    )
    args = parser.parse_args()
    rows: list[list[str]] = []
    torch.set_num_threads(1)
    print("| N | sums a batch | measured | convolution (ms) | carry chain (ms) | chain / conv |")
    print("|---|---|---|---|---|---|")
    for digits in (1, 2, 4, 15, 100):
        for with_network in (False, True):
            steps = _head_steps(digits, with_network)
            for step in steps.values():
                step()  # warm-up
            times: dict[str, list[float]] = {name: [] for name in steps}
            for _ in range(args.rounds):
                for name, step in steps.items():
                    times[name].append(_timed(step, args.repeats))
            median = {name: statistics.median(values) for name, values in times.items()}
            conv = median.get("convolution")
            chain = median["carry chain"]
            what = "head + LeNet" if with_network else "head alone"
            ratio = f"{chain / conv:.2f}" if conv else "n/a"
            conv_text = f"{conv:.2f}" if conv else "out of bounds"
            rows.append(
                [str(digits), str(max(1, 64 // digits)), what, conv_text, f"{chain:.2f}", ratio]
            )
            print("| " + " | ".join(rows[-1]) + " |", flush=True)
    header = ["N", "sums a batch", "measured", "convolution (ms)", "carry chain (ms)"]
    write_table(args.output, "addition_heads.py", [*header, "chain / conv"], rows)


if __name__ == "__main__":
    main()
