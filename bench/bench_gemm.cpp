// GEMM throughput (GFLOP/s, 2 m n k per product): our CPU sgemm beside OpenBLAS's cblas_sgemm on the
// same number of threads (when OpenBLAS was found at configure time), and cuBLAS in fp32, tf32 and
// bf16 when a GPU is present. Shapes: squares, and the GEMMs of ResNet-50 at batch 8 on 112x112
// faces, where a convolution lowered by im2col is m = N*H*W (output pixels), n = output channels,
// k = input channels * kh * kw; and the embedding FC 2048 -> 512 (weights [out, in], so B is
// transposed).
//
//   bench_gemm --benchmark_filter=1024     # one size; OMP_NUM_THREADS sets the CPU threads of both
//
// For a fair CPU comparison run the two libraries in separate processes
// (--benchmark_filter=cpu_ours, then =cpu_openblas): both keep idle worker threads spinning after a
// call, and in one process the two pools compete for the same cores.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "engine/allocator.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"

#if CUFACE_BENCH_OPENBLAS
#include <cblas.h>
#endif

namespace {

using namespace cuface;

struct GemmShape {
  std::string name;
  int64_t m, n, k;
  bool trans_b = false;
  double flops() const { return 2.0 * double(m) * double(n) * double(k); }
};

std::vector<GemmShape> shapes() {
  std::vector<GemmShape> list;
  for (int64_t s : {256, 512, 1024, 2048}) list.push_back({"square_" + std::to_string(s), s, s, s});
  // ResNet-50, batch 8, 112x112 input: conv1 -> 56x56, then stages at 28, 14, 7 and 4 pixels.
  const int64_t batch = 8;
  list.push_back({"resnet50_conv1_7x7x3_to_64", batch * 56 * 56, 64, 7 * 7 * 3});
  list.push_back({"resnet50_stage1_1x1_256_to_64", batch * 28 * 28, 64, 256});
  list.push_back({"resnet50_stage1_3x3x64_to_64", batch * 28 * 28, 64, 3 * 3 * 64});
  list.push_back({"resnet50_stage1_1x1_64_to_256", batch * 28 * 28, 256, 64});
  list.push_back({"resnet50_stage2_3x3x128_to_128", batch * 14 * 14, 128, 3 * 3 * 128});
  list.push_back({"resnet50_stage3_3x3x256_to_256", batch * 7 * 7, 256, 3 * 3 * 256});
  list.push_back({"resnet50_stage3_1x1_1024_to_256", batch * 7 * 7, 256, 1024});
  list.push_back({"resnet50_stage4_3x3x512_to_512", batch * 4 * 4, 512, 3 * 3 * 512});
  list.push_back({"resnet50_stage4_1x1_512_to_2048", batch * 4 * 4, 2048, 512});
  list.push_back({"resnet50_fc_2048_to_512", batch, 512, 2048, true});
  return list;
}

std::vector<float> random_floats(int64_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(count));
  for (float& x : v) x = dist(rng);
  return v;
}

void set_gflops(benchmark::State& state, double flops_per_iteration) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops_per_iteration * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

enum class CpuLibrary { Ours, OpenBLAS };

void cpu_gemm(benchmark::State& state, GemmShape s, CpuLibrary library) {
  const std::vector<float> a = random_floats(s.m * s.k, 1), b = random_floats(s.k * s.n, 2);
  std::vector<float> c(size_t(s.m * s.n));
  const int64_t ldb = s.trans_b ? s.k : s.n;
  const int threads = omp_get_max_threads();
#if CUFACE_BENCH_OPENBLAS
  openblas_set_num_threads(threads);
#endif
  for (auto _ : state) {
    if (library == CpuLibrary::Ours) {
      sgemm(false, s.trans_b, s.m, s.n, s.k, 1.0f, a.data(), s.k, b.data(), ldb, 0.0f, c.data(), s.n);
    } else {
#if CUFACE_BENCH_OPENBLAS
      cblas_sgemm(CblasRowMajor, CblasNoTrans, s.trans_b ? CblasTrans : CblasNoTrans, int(s.m), int(s.n), int(s.k),
                  1.0f, a.data(), int(s.k), b.data(), int(ldb), 0.0f, c.data(), int(s.n));
#endif
    }
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_gflops(state, s.flops());
  state.counters["threads"] = threads;
}

// cuBLAS through cuface::gemm. bf16 runs on bf16 copies of A and B made beforehand (as layers keep
// them), writing f32 C. Each iteration queues enough products for ~10 ms of work and then waits,
// so launch latency and the synchronisation do not dominate small shapes.
void cuda_gemm(benchmark::State& state, GemmShape s, Precision precision) {
  Context ctx(Device::CUDA);
  ctx.set_precision(precision);
  const DType input = precision == Precision::BF16 ? DType::BF16 : DType::F32;
  auto device_tensor = [&](const Shape& shape, uint32_t seed) {
    const std::vector<float> values = random_floats(shape.numel(), seed);
    Tensor host = Tensor::from_blob(const_cast<float*>(values.data()), shape, DType::F32, Device::CPU);
    return cast_to(ctx, host.to(Device::CUDA), input);
  };
  Tensor a = device_tensor({s.m, s.k}, 1);
  Tensor b = device_tensor(s.trans_b ? Shape{s.n, s.k} : Shape{s.k, s.n}, 2);
  Tensor c = Tensor::empty({s.m, s.n}, DType::F32, Device::CUDA);
  const int repeats = int(std::max(1.0, 1e11 / s.flops()));
  gemm(ctx, false, s.trans_b, 1.0f, a, b, 0.0f, c);  // first call: cuBLAS heuristics, workspace
  ctx.synchronize();
  for (auto _ : state) {
    for (int i = 0; i < repeats; ++i) gemm(ctx, false, s.trans_b, 1.0f, a, b, 0.0f, c);
    ctx.synchronize();
  }
  set_gflops(state, s.flops() * repeats);
}

void register_benchmarks() {
  const bool gpu = cuda_device_count() > 0;
  for (const GemmShape& s : shapes()) {
    const std::string name = "gemm/" + s.name + "/";
    benchmark::RegisterBenchmark((name + "cpu_ours").c_str(), cpu_gemm, s, CpuLibrary::Ours)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
#if CUFACE_BENCH_OPENBLAS
    benchmark::RegisterBenchmark((name + "cpu_openblas").c_str(), cpu_gemm, s, CpuLibrary::OpenBLAS)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
#endif
    if (!gpu) continue;
    for (Precision p : {Precision::FP32, Precision::TF32, Precision::BF16})
      benchmark::RegisterBenchmark((name + "cublas_" + precision_name(p)).c_str(), cuda_gemm, s, p)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
  }
#if !CUFACE_BENCH_OPENBLAS
  std::fprintf(stderr, "bench_gemm: built without OpenBLAS, so no side-by-side CPU reference\n");
#endif
  if (!gpu) std::fprintf(stderr, "bench_gemm: no CUDA device, cuBLAS cases skipped\n");
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
