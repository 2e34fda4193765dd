// Per-channel sums over the rows of an NHWC tensor seen as [rows, C] (channels contiguous), shared by
// the CPU kernels that reduce to one value per channel (batch norm statistics and gradients, PReLU's
// slope gradient).
//
// Rows are split over OpenMP threads in static chunks; each thread adds its rows into its own K x C
// double accumulators (accumulate_row(row, sums) adds into sums[k * C + c]), and the partials are then
// added in thread order. So the result does not depend on scheduling, and double accumulation keeps
// sums of up to millions of float terms exact to float precision.
#pragma once
#include <omp.h>

#include <cstdint>
#include <vector>

namespace cuface::cpu {

template <int K, class AccumulateRow>
std::vector<double> channel_sums(int64_t rows, int64_t channels, AccumulateRow accumulate_row) {
  const size_t width = size_t(K) * size_t(channels);
  const bool parallel = rows * channels > 32768;
  const int threads = parallel ? omp_get_max_threads() : 1;
  std::vector<double> partial(size_t(threads) * width, 0.0);
#pragma omp parallel num_threads(threads) if (parallel)
  {
    double* sums = partial.data() + size_t(omp_get_thread_num()) * width;
#pragma omp for schedule(static)
    for (int64_t row = 0; row < rows; ++row) accumulate_row(row, sums);
  }
  std::vector<double> total(partial.begin(), partial.begin() + std::ptrdiff_t(width));
  for (int t = 1; t < threads; ++t)
    for (size_t i = 0; i < width; ++i) total[i] += partial[size_t(t) * width + i];
  return total;
}

}  // namespace cuface::cpu
