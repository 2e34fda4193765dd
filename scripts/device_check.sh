#!/usr/bin/env bash
# The one script for GPU checks.
#
#   scripts/device_check.sh build   (here, on a machine with the CUDA toolkit but maybe no GPU)
#       builds with CUDA for sm_90 into build-device/ and copies the shared libraries the programs
#       need that the GPU machine lacks (Debian's libbenchmark, libgomp, Open MPI, ...) into
#       build-device/lib, and 500 UTKFace images for the loader benchmark into build-device/utkface.
#       Carry build-device/bin, build-device/lib and build-device/utkface (about 54 MB; the carry
#       limit is 64 MiB) to the GPU machine.
#   scripts/device_check.sh run     (on the GPU machine, from the repository root)
#       runs the GPU tests (the CUDA cases and GPU-vs-CPU comparisons of every test program), the
#       GPU benchmarks, the PyTorch side-by-side scripts when torch sees the GPU, our kernels under
#       compute-sanitizer memcheck, then the CPU tests,
#       within CUFACE_DEVICE_BUDGET seconds (default 480; steps that do not fit are listed as skipped);
#       CUFACE_DEVICE_STEPS='regex' runs only the steps whose names match (for a rerun).
#       Writes gpu.txt, summary.txt and device_check.log (every step's output) into $OUT (or
#       build-device/out) and prints the summary table last.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
# The build to make or run; another one (e.g. a CPU-only build) only for testing this script.
build=${CUFACE_DEVICE_BUILD:-build-device}

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
  # 500 UTKFace images (3.7 MB) for the loader benchmark on the GPU machine's 16 cores; it has no ../shared.
  rm -rf $build/utkface
  if [[ -d ../shared/data/utkface ]]; then
    mkdir -p $build/utkface
    images=(../shared/data/utkface/*)  # sorted by name
    cp "${images[@]:0:500}" $build/utkface/
  fi
  du -shc $build/bin $build/lib $build/utkface
  exit 0
fi

out=${OUT:-$build/out}
mkdir -p "$out"
# What comes back from the GPU machine is at most 8 files: every step appends to one log, and the
# summary is rewritten after each step, so both survive a run cut short by its time limit.
log="$out/device_check.log" summary="$out/summary.txt"
: >"$log"
: >"$summary"
# The whole run must end inside one device call (10 minutes at most, 15 minutes of device time per
# session, machine start included): steps start only while the budget lasts, and each is cut to it.
budget=${CUFACE_DEVICE_BUDGET:-480}
# For a rerun: only the steps whose name matches this regular expression (e.g. 'test_kernels|bench_gemm').
only=${CUFACE_DEVICE_STEPS:-.}
# cuDNN/cuBLAS: the CUDA install's, or PyTorch's wheels on the GPU machine. Only our programs get the
# carried libraries: Debian's libstdc++/libgomp in lib/ must not replace the ones PyTorch expects.
extra=$(ls -d /opt/torch/.venv/lib/python3*/site-packages/nvidia/*/lib 2>/dev/null | tr '\n' ':')
# Line-buffered output (stdbuf; Python unbuffered): a step killed at its limit still shows how far it got.
ours=(env LD_LIBRARY_PATH="$(realpath $build)/lib:/usr/local/cuda/lib64:${extra}${LD_LIBRARY_PATH:-}" stdbuf -oL -eL)
export PYTHONUNBUFFERED=1
# The tests find the program and the fixtures here, not at the paths they were built at.
export CUFACE_BINARY="$(realpath $build)/bin/cuface" CUFACE_SOURCE_DIR="$PWD"
python=$(ls /opt/torch/.venv/bin/python3 2>/dev/null || command -v python3)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
# A GPU that is there but unusable (a driver older than the CUDA runtime, a missing device node) must
# fail the check loudly, not turn every GPU test into a skip and the summary into "pass". Tests that
# find no device fail too (CUFACE_REQUIRE_CUDA, tests/common/backends.h) instead of skipping.
if nvidia-smi -L >/dev/null 2>&1; then
  if ! "${ours[@]}" $build/bin/cuface info 2>&1 | tee "$out/cuface-info.txt" | grep -q '^GPU [0-9]'; then
    echo "device_check: FAIL: nvidia-smi lists a GPU but cuface finds none (cuface info said:)" | tee -a "$log"
    cat "$out/cuface-info.txt" | tee -a "$log"
    exit 1
  fi
fi
export CUFACE_REQUIRE_CUDA=1

declare -a rows=()
step() {  # step NAME SECONDS COMMAND...: runs with a time limit, logs, records pass/fail and time
  local name=$1 limit=$2
  shift 2
  [[ $name =~ $only ]] || return 0
  local left=$((budget - SECONDS))
  if ((left < 20)); then
    rows+=("$(printf '%-40s %-8s' "$name" "skipped")")
  else
    ((limit > left)) && limit=$left
    local start=$SECONDS
    timeout -k 10 "$limit" "$@" >"$out/step.tmp" 2>&1
    local rc=$?
    rows+=("$(printf '%-40s %-8s %4ss' "$name" "$([[ $rc == 0 ]] && echo pass || echo FAIL:$rc)" $((SECONDS - start)))")
    { echo "==== $name (rc $rc, $((SECONDS - start)) s): $*"; tail -n 3000 "$out/step.tmp"; echo; } >>"$log"
    tail -n 5 "$out/step.tmp"
    rm -f "$out/step.tmp"
  fi
  printf '%s\n' "${rows[@]}" >"$summary"
}

# GPU cases first (BackendTest's .../cuda instances, the *Cuda*/*Gpu* comparisons with the CPU twin,
# the allocator, selfcheck), then the benchmarks beside PyTorch's, memcheck, then the CPU cases, which
# only show that the carried build runs there (they already pass here).
gpu_tests='*cuda*:*Cuda*:*CUDA*:*Gpu*:*GPU*:*Nccl*:Allocator.*:Selfcheck.*'
step cuface-info 30 "${ours[@]}" $build/bin/cuface info
for test in test_kernels test_layers test_engine test_face; do
  [[ -x $build/bin/$test ]] && step "$test (gpu)" 120 "${ours[@]}" $build/bin/$test --gtest_brief=1 --gtest_filter="$gpu_tests"
done
# The GPU benchmarks, each followed by its PyTorch twin (same shapes, same GPU, minutes apart: the
# ratios are the result), in the order of the issues' targets: the fused margin head at C = 100k,
# the whole ResNet-50 step, the loader on this machine's cores, then every layer shape.
torch_cuda=0
if [[ "pytorch_margin pytorch_resnet pytorch_layers pytorch_norm" =~ $only ]]; then
  "$python" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null && torch_cuda=1
  ((torch_cuda)) || rows+=("pytorch_* skipped: no torch with CUDA ($python)")
fi
gpu_bench() {  # gpu_bench NAME SECONDS: our benchmark's CUDA cases
  [[ -x $build/bin/$1 ]] && step "$1 (gpu)" "$2" "${ours[@]}" $build/bin/$1 --benchmark_filter='cuda|cublas' \
    --benchmark_min_time=0.1 --benchmark_format=console
}
pytorch_bench() {  # pytorch_bench NAME SECONDS ARGS...: bench/NAME.py on the GPU
  local name=$1 limit=$2
  shift 2
  ((torch_cuda)) && step "$name" "$limit" "$python" bench/$name.py --device cuda "$@"
}
gpu_bench bench_margin 75
pytorch_bench pytorch_margin 75 --classes 10000 100000 200000 --dtype fp32 bf16 --seconds 0.5
gpu_bench bench_resnet 120
pytorch_bench pytorch_resnet 90
if [[ -x $build/bin/bench_loader && -d $build/utkface ]]; then  # scaling over worker threads, JPEG shards
  step "bench_loader (cpu workers)" 60 "${ours[@]}" env CUFACE_LOADER_IMAGES="$(realpath $build)/utkface" \
    $build/bin/bench_loader --benchmark_filter='BM_Loader/size:(112|224)/jpeg:1/' --benchmark_format=console
fi
gpu_bench bench_layers 90
pytorch_bench pytorch_layers 90
gpu_bench bench_norm 60
pytorch_bench pytorch_norm 60
gpu_bench bench_gemm 45
gpu_bench bench_dist 45
# Our own kernels under compute-sanitizer's memcheck (out-of-bounds or misaligned accesses that a
# comparison with the CPU can miss, e.g. reads past a row that do not change the result). cuDNN and
# cuBLAS cases are left out: slow under the tool, and not our code.
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer \
  /opt/nvidia/*/compute-sanitizer 2>/dev/null | head -1)
if [[ -n $sanitizer && -x $build/bin/test_kernels ]]; then
  step "memcheck test_kernels (gpu)" 90 "${ours[@]}" "$sanitizer" --tool memcheck --error-exitcode 99 \
    --print-limit 20 $build/bin/test_kernels --gtest_brief=1 --gtest_filter="$gpu_tests:-*Conv*:*Gemm*"
fi
for test in $build/bin/test_*; do
  [[ -x $test ]] || continue
  step "$(basename "$test") (cpu)" 120 "${ours[@]}" "$test" --gtest_brief=1 --gtest_filter="-$gpu_tests"
done

echo
echo "== device check summary ($(date -u +%F), $(head -1 "$out/gpu.txt"), ${SECONDS} s of ${budget})"
printf '%s\n' "${rows[@]}" | tee "$summary"
