// CUDA random fills, one thread per Philox block of four u32 values (per normal for fill_normal); the CPU twins are in
// kernels/cpu/random.cpp.
#include "engine/cuda_context.h"
#include "engine/cuda_launch.h"
#include "engine/philox.h"
#include "kernels/random.h"

namespace cuface::cuda {

namespace {
constexpr int kBlock = 256;

__global__ void fill_uniform_kernel(float* y, int64_t n, uint64_t seed, uint64_t subsequence, float lo, float width) {
  CUFACE_KERNEL_LOOP(b, (n + 3) / 4) {
    const PhiloxOutput r = philox_block(seed, subsequence, uint64_t(b));
    for (int k = 0; k < 4 && 4 * b + k < n; ++k) y[4 * b + k] = fmaf(u32_to_unit_float(r.v[k]), width, lo);
  }
}

__global__ void fill_normal_kernel(float* y, int64_t n, uint64_t seed, uint64_t subsequence, float mean,
                                   float stddev, uint64_t first) {
  CUFACE_KERNEL_LOOP(i, n) {
    Philox rng(seed, subsequence, 2 * (first + uint64_t(i)));
    y[i] = fmaf(stddev, rng.next_normal(), mean);
  }
}
}  // namespace

void fill_uniform(Context& ctx, Tensor& y, uint64_t seed, uint64_t subsequence, float lo, float hi) {
  const int64_t n = y.numel();
  if (n == 0) return;
  launch(fill_uniform_kernel, grid_for((n + 3) / 4, kBlock), kBlock, 0, cuda_stream(ctx), y.data<float>(), n, seed,
         subsequence, lo, hi - lo);
}

void fill_normal(Context& ctx, Tensor& y, uint64_t seed, uint64_t subsequence, float mean, float stddev,
                 uint64_t first) {
  const int64_t n = y.numel();
  if (n == 0) return;
  launch(fill_normal_kernel, grid_for(n, kBlock), kBlock, 0, cuda_stream(ctx), y.data<float>(), n, seed, subsequence,
         mean, stddev, first);
}

}  // namespace cuface::cuda
