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

// Element e's normal takes numbers 2e and 2e+1, half of a Philox block; each is computed on its own,
// so a fill may start at any element.
void fill_normal(Context&, Tensor& y, uint64_t seed, uint64_t subsequence, float mean, float stddev, uint64_t first) {
  float* p = y.data<float>();
  const int64_t n = y.numel();
#pragma omp parallel for schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) {
    Philox rng(seed, subsequence, 2 * (first + uint64_t(i)));
    p[i] = std::fma(stddev, rng.next_normal(), mean);
  }
}

}  // namespace cuface::cpu
