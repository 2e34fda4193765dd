// CPU random fills. Each loop iteration computes one Philox block (four u32 values) from its index,
// so threads share no state and the result does not depend on how the loop is split.
#include <cmath>

#include "engine/philox.h"
#include "kernels/random.h"

namespace cuface::cpu {

void fill_uniform(Context&, Tensor& y, uint64_t seed, uint64_t subsequence, float lo, float hi) {
  float* p = y.data<float>();
  const int64_t n = y.numel();
  const float width = hi - lo;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t b = 0; b < (n + 3) / 4; ++b) {
    const PhiloxOutput r = philox_block(seed, subsequence, uint64_t(b));
    for (int k = 0; k < 4 && 4 * b + k < n; ++k) p[4 * b + k] = std::fma(u32_to_unit_float(r.v[k]), width, lo);
  }
}

// A block holds two normals (each takes two u32 values).
void fill_normal(Context&, Tensor& y, uint64_t seed, uint64_t subsequence, float mean, float stddev) {
  float* p = y.data<float>();
  const int64_t n = y.numel();
#pragma omp parallel for schedule(static) if (n > 32768)
  for (int64_t b = 0; b < (n + 1) / 2; ++b) {
    Philox rng(seed, subsequence, 4 * uint64_t(b));
    for (int k = 0; k < 2 && 2 * b + k < n; ++k) p[2 * b + k] = std::fma(stddev, rng.next_normal(), mean);
  }
}

}  // namespace cuface::cpu
