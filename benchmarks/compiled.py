"""``torch.compile`` given a fair try: the training step and evaluation, eager against Inductor.

Each variant runs in a fresh process on the documented network (``presets.mnist_sum()``)
with the Trainer's settings (bfloat16 autocast, channels-last, Adam, batch 128) over
preloaded MNIST tensors and the Trainer's allocator setting (``keep_freed_memory``), in
alternating order for ``--rounds`` rounds:

- ``eager``: the step as the Trainer runs it;
- ``eager-malloc-default``: the same with glibc's default thresholds (the Trainer's
  ``keep_freed_memory=False``), to show what the allocator setting does here;
- ``compile``: ``torch.compile(model)`` (Inductor, default mode), forward and backward;
- ``max-autotune``: the same with ``mode="max-autotune-no-cudagraphs"``;
- ``compile-trunk``: only the convolutional trunk compiled (default mode), the head eager;
- ``eval-eager`` / ``eval-frozen``: inference under ``torch.no_grad``, eager against
  compiled with Inductor's ``freezing`` (weights folded as constants).

Every variant reports the time of its first step (compiling included where compiled)
twice: cold (an empty ``TORCHINDUCTOR_CACHE_DIR``) and warm (the same directory again,
as a second run of a program would find it). Images per second come from the warm
process, timed after 5 untimed steps, the first of which compiles.

Usage::

    python benchmarks/compiled.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRAIN_VARIANTS = ("eager", "eager-malloc-default", "compile", "max-autotune", "compile-trunk")
EVAL_VARIANTS = ("eval-eager", "eval-frozen")
STEPS, WARMUP, BATCH = 60, 5, 128


def worker(variant: str, data_dir: Path) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    from multitask_mnist import load_mnist, presets
    from multitask_mnist.training.allocator import keep_freed_memory

    if variant != "eager-malloc-default":
        keep_freed_memory()  # as the Trainer does: freed buffers reused, not unmapped
    mnist = load_mnist(data_dir, train=True)
    n = (STEPS + WARMUP) * BATCH
    images = (mnist.data[:n].float().div(255).sub(0.1307).div(0.3081)).unsqueeze(1)
    images = images.contiguous(memory_format=torch.channels_last)
    digits = mnist.targets[:n]
    numbers = torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = presets.mnist_sum().to(memory_format=torch.channels_last)
    run = model
    tic = time.perf_counter()
    if variant in ("compile", "max-autotune"):
        mode = "max-autotune-no-cudagraphs" if variant == "max-autotune" else None
        run = torch.compile(model, mode=mode)
    elif variant == "compile-trunk":
        model.trunk.compile()  # in place: the module calls its compiled forward
    elif variant == "eval-frozen":
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        model.eval()
        run = torch.compile(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def batch(i: int) -> tuple[torch.Tensor, ...]:
        s = slice(i * BATCH, (i + 1) * BATCH)
        return images[s], numbers[s], digits[s], (digits[s] + numbers[s]).float()

    def train_step(i: int) -> None:
        x, z, d, y = batch(i)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = run(x, z, check_values=False)
            logits, total = out["digit"], out["sum"]
            loss = F.cross_entropy(logits.float(), d) + F.mse_loss(total.float().reshape(-1), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def eval_step(i: int) -> None:
        x, z, _, _ = batch(i)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            run(x, z, check_values=False)

    step = eval_step if variant.startswith("eval") else train_step
    step(0)  # compiles where compiled
    compile_s = time.perf_counter() - tic
    for i in range(1, WARMUP):
        step(i)
    tic = time.perf_counter()
    for i in range(WARMUP, WARMUP + STEPS):
        step(i)
    return {"images_per_s": STEPS * BATCH / (time.perf_counter() - tic), "first_step_s": compile_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=[*TRAIN_VARIANTS, *EVAL_VARIANTS])
    default_data = Path(os.environ.get("MULTITASK_MNIST_DATA", "data"))
    parser.add_argument("--data-dir", type=Path, default=default_data)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.data_dir)))
        return
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in args.variants}
    cold: dict[str, list[float]] = {v: [] for v in args.variants}
    for round_ in range(args.rounds):
        for variant in args.variants if round_ % 2 == 0 else args.variants[::-1]:
            with tempfile.TemporaryDirectory() as cache:
                env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
                command = [sys.executable, __file__, "--worker", variant]
                command += ["--data-dir", str(args.data_dir)]
                for warm in (False, True):
                    out = subprocess.run(
                        command, capture_output=True, text=True, check=True, env=env, timeout=1800
                    )
                    found = json.loads(out.stdout.strip().splitlines()[-1])
                    if warm:
                        runs[variant].append(found)
                    else:
                        cold[variant].append(found["first_step_s"])
    print(f"{args.rounds} alternating rounds, batch {BATCH}, {STEPS} timed steps\n")
    print("| variant | median img/s | each round | first step, cold cache s | warm s |")
    print("|---|---:|---|---:|---:|")
    for variant, found in runs.items():
        speeds = [r["images_per_s"] for r in found]
        each = " · ".join(f"{s:,.0f}" for s in speeds)
        warm_s = statistics.median(r["first_step_s"] for r in found)
        print(
            f"| {variant} | {statistics.median(speeds):,.0f} | {each} "
            f"| {statistics.median(cold[variant]):.1f} | {warm_s:.1f} |"
        )


if __name__ == "__main__":
    main()
