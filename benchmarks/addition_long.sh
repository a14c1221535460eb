#!/usr/bin/env bash
# The MNIST-addition table of docs/addition.rst: N = 1, 2, 4, 15, 100 with the papers'
# LeNet (10 epochs) and with the documented trunk (2 epochs: it costs several times
# the LeNet's time per image; the table's times say how much), 3 seeds
# each, held-out selection, through `compare`. One cell at a time per stream (the
# script runs the two networks as two streams, one thread each); resumable: run it
# again after an interruption. Wall times go to runs/addition/wall_times.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=(python -m multitask_mnist compare --workers 1 --threads 1 --output-dir runs/addition
     --methods none --seeds 3)
timed() {
  local start=$SECONDS
  "${RUN[@]}" "$@"
  echo "$* : $((SECONDS - start)) s" >> runs/addition/wall_times.txt
}
mkdir -p runs/addition
lenet() { for n in 1 2 4 15 100; do timed --benchmark "mnist_addition_$n" --epochs 10; done; }
trunk() { for n in 1 2 4 15 100; do timed --benchmark "mnist_addition_${n}_trunk" --epochs 2; done; }
case "${1:-both}" in
  lenet) lenet ;;
  trunk) trunk ;;
  both) lenet & trunk & wait ;;
esac
