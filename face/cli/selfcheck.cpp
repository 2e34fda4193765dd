// `cuface selfcheck`: is this machine's backend working and how fast is it? Runs an N x N x N GEMM
// a few times on the chosen device, checks a sample of the result against float64 dot products and
// reports GFLOP/s. Exits non-zero when the sample is wrong.
#include <CLI/CLI.hpp>
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "engine/allocator.h"
#include "face/cli/commands.h"
#include "kernels/gemm.h"

#if CUFACE_HAS_CUDA
#include "engine/cuda_check.h"
#endif

namespace cuface::cli {

namespace {

struct SelfcheckOptions {
  int64_t size = 1024;
  std::string device = "auto";
  std::string precision = "fp32";
  int runs = 5;
};

std::string gpu_description() {
#if CUFACE_HAS_CUDA
  if (cuda_device_count() > 0) {
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    return std::string(prop.name) + " (compute capability " + std::to_string(prop.major) + "." +
           std::to_string(prop.minor) + ", " + std::to_string(prop.multiProcessorCount) + " SMs)";
  }
  return "no GPU";
#else
  return "no GPU (built without the CUDA backend)";
#endif
}

// Norm-wise relative error allowed on the sample: fp32 rounding grows like sqrt(N) * 2^-24 (far
// below 1e-4 for any N that fits in memory); tf32 and bf16 round the inputs to 10 and 7 mantissa
// bits. A wrong element gives an error of order 1.
double error_bound(Device device, Precision precision) {
  if (device == Device::CPU || precision == Precision::FP32) return 1e-4;
  return precision == Precision::TF32 ? 5e-3 : 2e-2;
}

void run_selfcheck(const SelfcheckOptions& options) {
  const Device device = parse_device(options.device);
  const Precision precision = parse_precision(options.precision);
  const int64_t n = options.size;
  std::printf("CPU: %d OpenMP threads\n", omp_get_max_threads());
  std::printf("GPU: %s\n", gpu_description().c_str());

  Context ctx(device);
  ctx.set_precision(precision);
  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  Tensor a = Tensor::empty({n, n}), b = Tensor::empty({n, n});
  for (Tensor* t : {&a, &b})
    for (int64_t i = 0; i < t->numel(); ++i) t->data<float>()[i] = uniform(rng);
  Tensor da = a.to(device), db = b.to(device), dc = Tensor::empty({n, n}, DType::F32, device);

  const double flops = 2.0 * double(n) * double(n) * double(n);
  const char* where = device == Device::CUDA ? "cuda" : "cpu";
  std::printf("GEMM %lldx%lldx%lld on %s (%s), %d runs\n", (long long)n, (long long)n, (long long)n, where,
              device == Device::CUDA ? precision_name(precision) : "fp32", options.runs);
  double best = 0;
  for (int run = 1; run <= options.runs; ++run) {
    const auto start = std::chrono::steady_clock::now();
    gemm(ctx, false, false, 1.0f, da, db, 0.0f, dc);
    ctx.synchronize();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, flops / seconds / 1e9);
    std::printf("  run %d/%d: %.2f ms, %.1f GFLOP/s\n", run, options.runs, seconds * 1e3, flops / seconds / 1e9);
    std::fflush(stdout);
  }

  // A sample of entries (always including both corners) against float64 dot products.
  const Tensor c = dc.to(Device::CPU);
  std::uniform_int_distribution<int64_t> index(0, n - 1);
  double diff = 0, norm = 0;
  for (int sample = 0; sample < 256; ++sample) {
    const int64_t i = sample == 0 ? 0 : sample == 1 ? n - 1 : index(rng);
    const int64_t j = sample == 0 ? 0 : sample == 1 ? n - 1 : index(rng);
    double dot = 0;
    for (int64_t p = 0; p < n; ++p) dot += double(a.data<float>()[i * n + p]) * double(b.data<float>()[p * n + j]);
    const double got = c.data<float>()[i * n + j];
    diff += (got - dot) * (got - dot);
    norm += dot * dot;
  }
  const double error = std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);  // NaN fails below too
  const double bound = error_bound(device, precision);
  if (!(error <= bound))
    throw Error("selfcheck failed: " + std::string(where) + " GEMM sample error " + std::to_string(error) +
                " exceeds " + std::to_string(bound));
  std::printf("selfcheck passed: %s %lld^3 GEMM at %.1f GFLOP/s (best of %d), sample error %.1e (bound %.0e)\n",
              where, (long long)n, best, options.runs, error, bound);
}

}  // namespace

void add_selfcheck_command(CLI::App& app) {
  auto options = std::make_shared<SelfcheckOptions>();
  CLI::App* cmd = app.add_subcommand("selfcheck", "Run and verify a GEMM on the chosen backend and report GFLOP/s");
  cmd->add_option("--size", options->size, "Matrix size N of the N x N x N GEMM")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(32768)));
  cmd->add_option("--device", options->device, "cpu, cuda, or auto (cuda when a GPU is present)")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda", "gpu", "auto"}));
  cmd->add_option("--precision", options->precision, "GPU arithmetic: fp32, tf32 or bf16 (the CPU is always fp32)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "tf32", "bf16"}));
  cmd->add_option("--runs", options->runs, "How many times to run the GEMM")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  cmd->callback([options] { run_selfcheck(*options); });
}

}  // namespace cuface::cli
