#!/bin/bash
# bench_resnet's CPU cases beside bench/pytorch_resnet.py, in alternating rounds on 2 threads (OpenMP
# and OpenBLAS pinned): PyTorch as installed, and PyTorch with glibc keeping freed memory (without it
# PyTorch's CPU step page-faults its activations in every step, as cuface did before its host caching
# allocator; bench/RESULTS.md). Compare within a round: the machines here are noisy.
#
#   bench/cpu_side_by_side.sh [ROUNDS] [BENCH_FILTER] [PYTORCH_CASES]
set -euo pipefail
rounds=${1:-2}
filter=${2:-cpu}
cases=${3:-resnet50:8:112,resnet50:8:224,resnet50:16:112,resnet18:64:112}
cd "$(dirname "$0")/.."
bench=build/bin/bench_resnet
[ -x "$bench" ] || { echo "cpu_side_by_side.sh: $bench not found: build it first (cmake --build build --target bench_resnet)" >&2; exit 1; }
keep=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=4294967295
pytorch() { OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 /usr/bin/python3 bench/pytorch_resnet.py --threads 2 --cases "$cases" --min-seconds 8; }
for round in $(seq "$rounds"); do
  echo "== round $round $(date +%T)"
  OMP_NUM_THREADS=2 "$bench" --benchmark_filter="$filter" 2>&1 | awk '/^resnet/ {print "cuface", $1, $2, $3}'
  pytorch 2>&1 | grep '^pytorch'
  GLIBC_TUNABLES=$keep pytorch 2>&1 | grep '^pytorch' | sed 's/^pytorch/pytorch-kept/'
done
