#!/usr/bin/env bash
# The one script for GPU checks.
#
#   scripts/device_check.sh build   (here, on a machine with the CUDA toolkit but maybe no GPU)
#       builds with CUDA for sm_90 into build-device/ and copies the shared libraries the programs
#       need that the GPU machine lacks (Debian's libbenchmark, libgomp, Open MPI, ...) into
#       build-device/lib. Carry build-device/bin and build-device/lib (about 50 MB; the carry limit
#       is 64 MiB) to the GPU machine.
#   scripts/device_check.sh run     (on the GPU machine, from the repository root)
#       runs every GPU test (all test programs: CUDA cases no longer skip), the GPU-vs-CPU
#       comparisons, the benchmarks and the PyTorch side-by-side scripts when torch is importable,
#       within 8 minutes, writes logs into $OUT (or build-device/out) and prints a short table last.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
build=build-device

if [[ $mode == build ]]; then
  set -e
  # Without dlib: it would bring OpenBLAS and LAPACK into lib/, and face detection needs no GPU.
  cmake -S . -B $build -DCUFACE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release -DCUFACE_DLIB=OFF \
        -DCUFACE_BENCH_OPENBLAS=OFF -DCUFACE_CPU_ARCH_FLAGS="-march=x86-64-v3" >/dev/null
  cmake --build $build -j"$(nproc)"
  rm -rf $build/lib && mkdir -p $build/lib
  # Shared libraries that are not part of the CUDA install (NCCL included: the GPU machine has it
  # in PyTorch's wheels, found at run time), glibc or the GPU driver; the carry limit is 64 MiB.
  for program in $build/bin/*; do
    ldd "$program" | awk '/=> \// {print $3}'
  done | sort -u | grep -v -E '/(libc|libm|libdl|librt|libpthread|ld-linux|libcuda|libcudart|libcublas|libcublasLt|libcudnn[a-z_]*|libnccl|libnvrtc[a-z-]*)\.so' |
    while read -r library; do cp -L "$library" $build/lib/; done
  du -shc $build/bin $build/lib
  exit 0
fi

out=${OUT:-$build/out}
mkdir -p "$out"
# cuDNN/cuBLAS: the CUDA install's, or PyTorch's wheels on the GPU machine.
extra=$(ls -d /opt/torch/.venv/lib/python3*/site-packages/nvidia/*/lib 2>/dev/null | tr '\n' ':')
# The tests find the program and the fixtures here, not at the paths they were built at.
export CUFACE_BINARY="$PWD/$build/bin/cuface" CUFACE_SOURCE_DIR="$PWD"
export LD_LIBRARY_PATH="$PWD/$build/lib:/usr/local/cuda/lib64:${extra}${LD_LIBRARY_PATH:-}"
python=$(ls /opt/torch/.venv/bin/python 2>/dev/null || command -v python3)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

declare -a rows
step() {  # step NAME SECONDS COMMAND...: runs with a time limit, logs, records pass/fail and time
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  rows+=("$(printf '%-28s %-6s %4ss' "$name" "$([[ $rc == 0 ]] && echo pass || echo FAIL:$rc)" $((SECONDS - start)))")
  tail -n 5 "$out/$name.log"
}

for test in $build/bin/test_*; do
  step "$(basename "$test")" 120 "$test" --gtest_brief=1
done
step cuface-info 30 $build/bin/cuface info
for bench in $build/bin/bench_*; do
  step "$(basename "$bench")" 120 "$bench" --benchmark_min_time=0.1 --benchmark_format=console
done
if "$python" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  for script in bench/pytorch_*.py; do
    [[ -f $script ]] && step "$(basename "$script" .py)" 120 "$python" "$script" --device cuda
  done
fi

echo
echo "== device check summary ($(date -u +%F), $(head -1 "$out/gpu.txt"))"
printf '%s\n' "${rows[@]}" | tee "$out/summary.txt"
