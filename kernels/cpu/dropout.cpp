// CPU dropout (definition in kernels/dropout.h). Each iteration draws one Philox block, the four
// uniforms of elements 4b .. 4b+3, from its index alone, so the split over threads cannot change it.
// The full blocks run without bounds tests and with unconditional loads, which lets GCC vectorise
// Philox itself across blocks; the last partial block is done on its own.
#include "engine/philox.h"
#include "kernels/dropout.h"

namespace cuface::cpu {

namespace {
inline void drop_block(const float* x, float* y, int count, float p, float scale, uint64_t seed, uint64_t step,
                       int64_t block) {
  const PhiloxOutput r = philox_block(seed, step, uint64_t(block));
  for (int k = 0; k < count; ++k) {
    const float kept = x[k] * scale;
    y[k] = u32_to_unit_float(r.v[k]) >= p ? kept : 0.0f;
  }
}
}  // namespace

void dropout(Context&, const Tensor& x, Tensor& y, float p, uint64_t seed, const RandomStep& random) {
  const uint64_t step = random_step(random.number, random.counter_data());
  const float* px = x.data<float>();
  float* py = y.data<float>();
  const int64_t n = y.numel(), full_blocks = n / 4;
  const float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (n > 16384)
  for (int64_t b = 0; b < full_blocks; ++b) drop_block(px + 4 * b, py + 4 * b, 4, p, scale, seed, step, b);
  if (n % 4) drop_block(px + 4 * full_blocks, py + 4 * full_blocks, int(n % 4), p, scale, seed, step, full_blocks);
}

}  // namespace cuface::cpu
