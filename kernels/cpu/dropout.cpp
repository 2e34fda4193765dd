// CPU dropout (definition in kernels/dropout.h). Each iteration draws one Philox block, the four
// uniforms of elements 4b .. 4b+3, from its index alone, so the split over threads cannot change it.
#include "engine/philox.h"
#include "kernels/dropout.h"

namespace cuface::cpu {

void dropout(Context&, const Tensor& x, Tensor& y, float p, uint64_t seed, uint64_t step) {
  const float* px = x.data<float>();
  float* py = y.data<float>();
  const int64_t n = y.numel();
  const float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (n > 16384)
  for (int64_t b = 0; b < (n + 3) / 4; ++b) {
    const PhiloxOutput r = philox_block(seed, step, uint64_t(b));
    for (int k = 0; k < 4 && 4 * b + k < n; ++k) {
      const int64_t i = 4 * b + k;
      py[i] = u32_to_unit_float(r.v[k]) >= p ? px[i] * scale : 0.0f;
    }
  }
}

}  // namespace cuface::cpu
