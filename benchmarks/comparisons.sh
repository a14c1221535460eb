#!/usr/bin/env bash
# The comparison tables of docs/results.rst, one benchmark at a time (each under two hours
# on 2 cores: two cells at once, one thread each). Every command is resumable: run the
# script again after an interruption and it finishes the grids where they stopped.
# Wall times go to runs/compare/wall_times.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
METHODS=(none upgrad pcgrad mgda mgda_ub nash_mtl famo uncertainty)
RUN=(python -m multitask_mnist compare --workers 2 --threads 1 --output-dir runs/compare)
timed() {
  local start=$SECONDS
  "${RUN[@]}" "$@"
  echo "$* : $((SECONDS - start)) s" >> runs/compare/wall_times.txt
}
mkdir -p runs/compare
# (a) MultiMNIST, held-out selection, and the papers' protocol for the published rows
timed --benchmark multi_mnist --methods "${METHODS[@]}" --seeds 5 --epochs 10
timed --benchmark multi_mnist --methods "${METHODS[@]}" --seeds 5 --epochs 10 --protocol papers
# (b) the two companions of Pareto MTL
timed --benchmark multi_fashion --methods "${METHODS[@]}" --seeds 5 --epochs 5
timed --benchmark multi_fashion_mnist --methods "${METHODS[@]}" --seeds 5 --epochs 5
# (c) the documented task: the digit and the sum
timed --benchmark digit_sum --methods none upgrad pcgrad --seeds 5 --epochs 1
