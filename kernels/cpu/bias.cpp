// CPU bias kernels: rows split over threads; the gradient sums each thread's rows in double, then
// adds the per-thread sums in thread order (deterministic for a fixed thread count).
#include <omp.h>

#include <vector>

#include "kernels/bias.h"

namespace cuface::cpu {

void add_bias(Context&, Tensor& y, const Tensor& bias) {
  const int64_t channels = bias.size(0), rows = channels ? y.numel() / channels : 0;
  const float* b = bias.data<float>();
  float* py = y.data<float>();
#pragma omp parallel for schedule(static) if (y.numel() > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    float* row = py + r * channels;
    for (int64_t c = 0; c < channels; ++c) row[c] += b[c];
  }
}

void accumulate_bias_grad(Context&, const Tensor& dy, Tensor& db) {
  const int64_t channels = db.size(0), rows = channels ? dy.numel() / channels : 0;
  const float* pdy = dy.data<float>();
  const int threads = dy.numel() > 65536 ? omp_get_max_threads() : 1;
  std::vector<double> partial(size_t(threads * channels), 0.0);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), team = omp_get_num_threads();
    double* sum = partial.data() + t * channels;
    for (int64_t r = rows * t / team; r < rows * (t + 1) / team; ++r) {
      const float* row = pdy + r * channels;
      for (int64_t c = 0; c < channels; ++c) sum[c] += row[c];
    }
  }
  float* pdb = db.data<float>();
  for (int64_t c = 0; c < channels; ++c) {
    double total = 0;
    for (int t = 0; t < threads; ++t) total += partial[size_t(t * channels + c)];
    pdb[c] += float(total);
  }
}

}  // namespace cuface::cpu
