#!/bin/bash
# bench_resnet's CPU cases beside bench/pytorch_resnet.py, in alternating rounds on 2 threads (OpenMP
# and OpenBLAS pinned): PyTorch as installed, and PyTorch with glibc keeping freed memory (without it
# PyTorch's CPU step page-faults its activations in every step, as cuface did before its host caching
# allocator; bench/RESULTS.md), and PyTorch kept on transparent huge pages as cuface's large blocks
# are (glibc.malloc.hugetlb=1). Compare within a round: the machines here are noisy. The last lines
# give each case's ratio to PyTorch kept and to PyTorch on huge pages in every round, and the medians.
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
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for round in $(seq "$rounds"); do
  echo "== round $round $(date +%T)"
  OMP_NUM_THREADS=2 "$bench" --benchmark_filter="$filter" 2>&1 | awk '/^resnet/ {print "cuface", $1, $2, $3}'
  pytorch 2>&1 | grep '^pytorch'
  GLIBC_TUNABLES=$keep pytorch 2>&1 | grep '^pytorch' | sed 's/^pytorch/pytorch-kept/'
  GLIBC_TUNABLES=$keep:glibc.malloc.hugetlb=1 pytorch 2>&1 | grep '^pytorch' | sed 's/^pytorch/pytorch-huge/'
done | tee "$log"
# Ratios: a case is its network, pass and batch/size ("resnet50_train_step b16_112px") in both programs.
awk '
  /^== round/ { round = $3 }
  /^(cuface|pytorch-kept|pytorch-huge) / {
    split($2, part, "/"); match($2, /b[0-9]+_[0-9]+px/)
    key = part[1] " " substr($2, RSTART, RLENGTH)
    ms[$1, key, round] = $3; keys[key] = 1
  }
  END {
    for (key in keys) for (p = 1; p <= 2; ++p) {
      peer = p == 1 ? "pytorch-kept" : "pytorch-huge"
      n = 0; line = ""
      for (r = 1; r <= round; ++r)
        if (ms["cuface", key, r] > 0 && ms[peer, key, r] > 0) {
          ratio[++n] = ms["cuface", key, r] / ms[peer, key, r]; line = line sprintf(" %.2f", ratio[n])
        }
      if (n == 0) continue
      for (i = 2; i <= n; ++i) for (j = i; j > 1 && ratio[j - 1] > ratio[j]; --j) { t = ratio[j]; ratio[j] = ratio[j - 1]; ratio[j - 1] = t }
      median = n % 2 ? ratio[(n + 1) / 2] : (ratio[n / 2] + ratio[n / 2 + 1]) / 2
      printf "cuface / %s  %-36s%s  median %.2f\n", peer, key, line, median
    }
  }' "$log" | sort
