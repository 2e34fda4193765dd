#!/usr/bin/env bash
# The ONNX export's figures in bench/RESULTS.md: how long `cuface export` takes for a ResNet-50 face
# model, and embedding throughput of the exported file in onnxruntime (scripts/onnx_embed.js,
# onnxruntime-node's CPU build) beside cuface's own forward of the same network (bench_resnet's
# resnet50_embed case: Google Benchmark's wall-clock time, at least 2 s, and the main thread's CPU
# time), batch 8 at 112 px, on the same CPU with the same thread count (onnxruntime's
# intraOpNumThreads = OMP_NUM_THREADS; idle threads sleep on both sides: OMP_WAIT_POLICY=PASSIVE as the
# cuface program sets it, onnxruntime's allow_spinning 0). Both time the network alone: the inputs
# are ready in memory.
#
#   bench/onnx_vs_cuface.sh [BUILD_DIR] [SECONDS] [THREADS...]     default: build 10 1 2
#
# The checkpoint comes from a one-step ResNet-50 run on 24 aligned LFW faces (../shared/data/lfw);
# the weights' values do not change the speed. Needs bench_resnet built and onnxruntime-node
# (scripts/setup.sh --all). Each thread count runs onnxruntime, cuface, onnxruntime, cuface so that
# a change in the machine's load shows up as a difference between the two runs of one side.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
seconds="${2:-10}"
threads=("${@:3}")
[[ ${#threads[@]} -eq 0 ]] && threads=(1 2)
lfw="$root/../shared/data/lfw"
modules="$root/build-tools/onnxruntime/node_modules"
for need in "$build/bin/cuface" "$build/bin/bench_resnet" "$lfw/landmarks5.txt" "$modules/onnxruntime-node"; do
  [[ -e "$need" ]] || { echo "onnx_vs_cuface: $need is missing" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# 24 LFW faces of their first people, one identity per person.
head -n 24 "$lfw/landmarks5.txt" | awk -v dir="$lfw/images" '{split($1, p, "/"); if (!(p[1] in id)) id[p[1]] = n++;
  print dir "/" $1, id[p[1]]}' > "$work/list.txt"
"$build/bin/cuface" pack "$work/list.txt" --format list --align "$lfw/landmarks5.txt" --out "$work/pack" \
  > /dev/null
"$build/bin/cuface" train FR --train-sets "$work/pack" --out "$work/run" --arch resnet50 --batch 8 --steps 1 \
  --device cpu --log-every 1 > /dev/null

echo "== export (ResNet-50, 112 px, NCHW): wall and CPU time"
/usr/bin/time -f "process: %e s wall, %U s user + %S s system" \
  "$build/bin/cuface" export "$work/run" --format onnx --out "$work/r50.onnx" 2>&1 | grep -v '^export: \(loading\|writing\)'

head -c $((8 * 112 * 112 * 3)) /dev/urandom > "$work/crops.u8"
for t in "${threads[@]}"; do
  echo "== $t thread(s), batch 8, 112 px, ${seconds} s per run"
  for round in 1 2; do
    printf "onnxruntime %s: " "$round"
    NODE_PATH="$modules" node "$root/scripts/onnx_embed.js" "$work/r50.onnx" "$work/crops.u8" 8 112 nchw "$t" "$seconds"
    printf "cuface      %s: " "$round"
    OMP_NUM_THREADS="$t" OMP_WAIT_POLICY=PASSIVE "$build/bin/bench_resnet" --benchmark_filter='resnet50_embed/cpu_b8_112px' \
      2>/dev/null | grep resnet50_embed
  done
done
