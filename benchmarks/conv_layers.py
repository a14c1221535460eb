"""Each convolution of the documented network alone: its rate against the matrix product's.

For every convolution of ``presets.mnist_sum()`` at the training batch size, times the
forward pass and the backward pass (the weight's gradient, and the input's where the
network needs it) under each memory layout and precision given, in alternating
rounds, and reports the median milliseconds and GFLOP/s, beside this machine's
2048x2048 matrix product in the same precision: where a step's time goes, kernel by
kernel, and how far each kernel is from the rate the CPU's matrix units reach.

Usage::

    python benchmarks/conv_layers.py --batch-size 128 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from throughput import matmul_gflops
from torch import nn

from multitask_mnist import presets

VARIANTS = {
    "bf16 channels-last": (torch.bfloat16, torch.channels_last),
    "bf16 contiguous": (torch.bfloat16, torch.contiguous_format),
    "fp32 channels-last": (torch.float32, torch.channels_last),
}


def layers(batch_size: int) -> list[tuple[str, nn.Conv2d, tuple[int, ...], bool]]:
    """Each convolution with its input shape, and whether its input needs a gradient."""
    model = presets.mnist_sum()
    found: list[tuple[str, nn.Conv2d, tuple[int, ...], bool]] = []
    x = torch.zeros(batch_size, 1, 28, 28)
    first = True
    for name, module in model.trunk.named_children():
        if isinstance(module, nn.Conv2d):
            found.append((name, module, tuple(x.shape), not first))
            first = False
        x = module(x)
    return found


def mean_ms(fn: Callable[[], object], repeats: int) -> float:
    for _ in range(3):
        fn()
    tic = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - tic) / repeats * 1e3


def measure(
    conv: nn.Conv2d, shape: tuple[int, ...], input_grad: bool, variant: str, repeats: int
) -> tuple[float, float, float]:
    """Forward ms, backward ms and multiply-adds of one convolution in one variant."""
    dtype, layout = VARIANTS[variant]
    weight = conv.weight.detach().to(dtype).contiguous(memory_format=layout).requires_grad_()
    bias = conv.bias.detach().to(dtype).requires_grad_() if conv.bias is not None else None
    x = torch.randn(shape, dtype=dtype).contiguous(memory_format=layout)
    x.requires_grad_(input_grad)
    out = nn.functional.conv2d(x, weight, bias)
    grad = torch.randn_like(out)
    forward = mean_ms(lambda: nn.functional.conv2d(x, weight, bias), repeats)

    def backward() -> None:
        y = nn.functional.conv2d(x, weight, bias)
        y.backward(grad)

    backward_ms = mean_ms(backward, repeats) - forward
    macs = out.numel() * conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
    return forward, backward_ms, float(macs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    torch.manual_seed(0)
    found = layers(args.batch_size)
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    macs: dict[str, float] = {}
    for round_ in range(args.rounds):
        variants = args.variants if round_ % 2 == 0 else args.variants[::-1]
        for variant in variants:
            for name, conv, shape, input_grad in found:
                f, b, m = measure(conv, shape, input_grad, variant, args.repeats)
                times.setdefault((name, variant), []).append((f, b))
                macs[name] = m
    rates = {
        "bf16": matmul_gflops(torch.bfloat16),
        "fp32": matmul_gflops(torch.float32),
    }
    print(
        f"batch {args.batch_size}, {torch.get_num_threads()} threads, medians of "
        f"{args.rounds} alternating rounds; 2048x2048 matmul: {rates['bf16']:.0f} GFLOP/s "
        f"bf16, {rates['fp32']:.0f} fp32\n"
    )
    print("| layer | input | variant | forward ms | backward ms | GFLOP/s | of matmul |")
    print("|---|---|---|---:|---:|---:|---:|")
    totals: dict[str, float] = {}
    for name, _conv, shape, input_grad in found:
        for variant in args.variants:
            rounds = times[(name, variant)]
            f = statistics.median(r[0] for r in rounds)
            b = statistics.median(r[1] for r in rounds)
            flops = 2 * macs[name] * (3 if input_grad else 2)
            gflops = flops / (f + b) / 1e6
            rate = rates[variant.split()[0]]
            totals[variant] = totals.get(variant, 0.0) + f + b
            print(
                f"| {name} | {'x'.join(map(str, shape))} | {variant} | {f:.2f} | {b:.2f} "
                f"| {gflops:.0f} | {gflops / rate:.0%} |"
            )
    for variant, total in totals.items():
        print(f"\n{variant}: {total:.1f} ms per step in the convolutions", end="")
    print()


if __name__ == "__main__":
    main()
