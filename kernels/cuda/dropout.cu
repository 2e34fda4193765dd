// CUDA dropout (definition in kernels/dropout.h; CPU twin in kernels/cpu/dropout.cpp): one thread
// per Philox block of four elements, the same blocks the CPU draws.
#include "engine/cuda_context.h"
#include "engine/cuda_launch.h"
#include "engine/philox.h"
#include "kernels/cuda/channels.cuh"
#include "kernels/dropout.h"

namespace cuface::cuda {

namespace {
constexpr int kBlock = 256;

template <class T>
__global__ void dropout_kernel(const T* x, T* y, int64_t n, float p, float scale, uint64_t seed, uint64_t number,
                               const int32_t* counter) {
  const uint64_t step = random_step(number, counter);
  CUFACE_KERNEL_LOOP(b, (n + 3) / 4) {
    const PhiloxOutput r = philox_block(seed, step, uint64_t(b));
    for (int k = 0; k < 4 && 4 * b + k < n; ++k) {
      const int64_t i = 4 * b + k;
      y[i] = from_float<T>(u32_to_unit_float(r.v[k]) >= p ? as_float(x[i]) * scale : 0.0f);
    }
  }
}
}  // namespace

void dropout(Context& ctx, const Tensor& x, Tensor& y, float p, uint64_t seed, const RandomStep& step) {
  const int64_t n = y.numel();
  if (n == 0) return;
  const float scale = 1.0f / (1.0f - p);
  const int grid = grid_for((n + 3) / 4, kBlock);
  if (x.dtype() == DType::BF16)
    launch(dropout_kernel<bf16>, grid, kBlock, 0, cuda_stream(ctx), x.data<bf16>(), y.data<bf16>(), n, p, scale, seed,
           step.number, step.counter_data());
  else
    launch(dropout_kernel<float>, grid, kBlock, 0, cuda_stream(ctx), x.data<float>(), y.data<float>(), n, p, scale,
           seed, step.number, step.counter_data());
}

}  // namespace cuface::cuda
