// Identification search throughput (queries/s): eval::search_gallery, the blocked GEMM with a streaming
// top-5, over synthetic galleries of 10k, 100k and 1M normalised 512-d rows (f32: 2 KiB a row, 2 GiB
// for 1M) with batches of 1 and 256 probes, on the CPU and, when present, a GPU. Memory beyond the
// gallery is one block of scores (probes x 4096 rows on the CPU, x 65536 on a GPU). `gemm_only` runs
// the same block GEMMs without the top-k, so the ratio of the two is the top-k's cost even on a busy
// machine.
//
//   bench_identify --benchmark_filter=cpu/100000     # one size; OMP_NUM_THREADS sets the CPU threads
#include <benchmark/benchmark.h>

#include <cmath>
#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>

#include "engine/allocator.h"
#include "face/eval/identification.h"
#include "kernels/gemm.h"

namespace {

using namespace cuface;

constexpr int64_t kDim = 512;
constexpr int kTopK = 5;

// Rows of a cheap, reproducible generator (a 64-bit LCG), normalised: content does not change the
// search's cost, and a million rows by std::mt19937 would take longer than the search.
Tensor random_unit_rows(int64_t rows, uint64_t seed) {
  Tensor t = Tensor::empty({rows, kDim});
  float* x = t.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < rows; ++i) {
    uint64_t state = seed * 0x9E3779B97F4A7C15ull + uint64_t(i) * 0xD1B54A32D192ED03ull;
    double squares = 0;
    for (int64_t j = 0; j < kDim; ++j) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      const float v = float(int32_t(state >> 32)) * (1.0f / 2147483648.0f);
      x[i * kDim + j] = v;
      squares += double(v) * v;
    }
    const float scale = float(1.0 / std::sqrt(squares));
    for (int64_t j = 0; j < kDim; ++j) x[i * kDim + j] *= scale;
  }
  return t;
}

// One gallery per size and device, made once: the 1M one is 2 GiB.
const Tensor& gallery(int64_t rows, Device device) {
  static std::map<std::pair<int64_t, Device>, Tensor> made;
  auto [at, fresh] = made.try_emplace({rows, device});
  if (fresh) at->second = device == Device::CPU ? random_unit_rows(rows, 1) : random_unit_rows(rows, 1).to(device);
  return at->second;
}

void search(benchmark::State& state, Device device) {
  if (device == Device::CUDA && cuda_device_count() == 0) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const int64_t rows = state.range(0), probes_per_batch = state.range(1);
  Context ctx(device);
  const Tensor& g = gallery(rows, device);
  const Tensor probes = random_unit_rows(probes_per_batch, 2);
  for (auto _ : state) {
    const eval::Candidates found = eval::search_gallery(ctx, g, probes, kTopK);
    benchmark::DoNotOptimize(found.row.data());
  }
  state.counters["queries_per_s"] =
      benchmark::Counter(double(probes_per_batch) * double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["gallery_GiB"] = double(g.bytes()) / double(1 << 30);
  state.counters["GFLOP_per_s"] = benchmark::Counter(
      2.0 * double(rows) * double(kDim) * double(probes_per_batch) * double(state.iterations()) / 1e9,
      benchmark::Counter::kIsRate);
}

// The search's GEMMs alone, block by block into one buffer, as search_gallery runs them.
void gemm_only(benchmark::State& state, Device device) {
  if (device == Device::CUDA && cuda_device_count() == 0) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const int64_t rows = state.range(0), probes_per_batch = state.range(1);
  const int64_t block_rows = std::min<int64_t>(rows, device == Device::CUDA ? 65536 : 4096);
  Context ctx(device);
  const Tensor& g = gallery(rows, device);
  const Tensor probes = random_unit_rows(probes_per_batch, 2).to(device);
  Tensor scores = Tensor::empty({probes_per_batch * block_rows}, DType::F32, device);
  for (auto _ : state) {
    for (int64_t g0 = 0; g0 < rows; g0 += block_rows) {
      const int64_t m = std::min(block_rows, rows - g0);
      Tensor block = scores.slice(0, probes_per_batch * m).reshape({probes_per_batch, m});
      gemm(ctx, false, true, 1.0f, probes, g.slice(g0, g0 + m), 0.0f, block);
    }
    ctx.synchronize();
  }
  state.counters["queries_per_s"] =
      benchmark::Counter(double(probes_per_batch) * double(state.iterations()), benchmark::Counter::kIsRate);
}

void sizes(benchmark::internal::Benchmark* b) {
  for (int64_t rows : {10000, 100000, 1000000})
    for (int64_t probes : {1, 256}) b->Args({rows, probes});
  b->ArgNames({"gallery", "probes"})->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
}

BENCHMARK_CAPTURE(search, cpu, Device::CPU)->Apply(sizes);
BENCHMARK_CAPTURE(search, cuda, Device::CUDA)->Apply(sizes);
BENCHMARK_CAPTURE(gemm_only, cpu, Device::CPU)->Apply(sizes);
BENCHMARK_CAPTURE(gemm_only, cuda, Device::CUDA)->Apply(sizes);

}  // namespace

BENCHMARK_MAIN();
