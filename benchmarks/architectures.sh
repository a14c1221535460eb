#!/usr/bin/env bash
# The architecture tables of docs/results.rst: hard sharing and the soft-sharing presets,
# 5 seeds, held-out selection, beside the single-task pair, each under equal weighting
# and the two methods with the best mean Δm over the three held-out comparison tables
# (uncertainty, pcgrad). 3 epochs on MultiMNIST, 2 on the Fashion benchmarks, so that
# the tables fit a working session on 2 cores (about two hours in all). One
# benchmark at a time, two cells at once with one thread each; resumable: run it again
# after an interruption. Wall times go to runs/architectures/wall_times.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
ARCHITECTURES=(default multi_mnist_mmoe multi_mnist_cgc multi_mnist_cross_stitch multi_mnist_mtan)
RUN=(python -m multitask_mnist compare --workers 2 --threads 1 --output-dir runs/architectures
     --seeds 5 --architectures "${ARCHITECTURES[@]}")
timed() {
  local start=$SECONDS
  "${RUN[@]}" "$@"
  echo "$* : $((SECONDS - start)) s" >> runs/architectures/wall_times.txt
}
mkdir -p runs/architectures
timed --benchmark multi_mnist --epochs 3 --methods none uncertainty pcgrad
timed --benchmark multi_fashion --epochs 2 --methods none uncertainty pcgrad
timed --benchmark multi_fashion_mnist --epochs 2 --methods none uncertainty pcgrad
cp runs/architectures/multi_mnist/heldout/epochs-3/none+multi_mnist_cgc/seed-0/gates.png \
  docs/_static/gates_multi_mnist_cgc.png
