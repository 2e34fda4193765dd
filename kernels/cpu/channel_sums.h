// Per-channel sums over the rows of an NHWC tensor seen as [rows, C] (channels contiguous), shared by
// the CPU kernels that reduce to one value per channel (batch norm statistics and gradients, PReLU's
// slope gradient).
//
// Rows are split over OpenMP threads in static chunks; each thread adds its rows into its own K
// arrays of C double accumulators (accumulate_row(row, sums) adds into sums[k][c]), and the partials
// are then added in thread order. So the result does not depend on scheduling (only on the thread
// count), and double accumulation keeps sums of millions of float terms exact to float precision.
// The K arrays are padded apart by 64 bytes: with C a multiple of 512 they would otherwise sit a
// multiple of 4 KiB apart, and each load of sums[1][c] would wait on the store to sums[0][c] (4K
// aliasing), which made C = 1024 several times slower.
#pragma once
#include <omp.h>

#include <array>
#include <cstdint>
#include <vector>

namespace cuface::cpu {

template <int K, class AccumulateRow>
std::vector<double> channel_sums(int64_t rows, int64_t channels, AccumulateRow accumulate_row) {
  const size_t stride = size_t(channels) + 8;  // one array of accumulators, padded
  const size_t width = size_t(K) * stride;     // one thread's accumulators
  const bool parallel = rows * channels > 32768;
  const int threads = parallel ? omp_get_max_threads() : 1;
  std::vector<double> partial(size_t(threads) * width, 0.0);
#pragma omp parallel num_threads(threads) if (parallel)
  {
    std::array<double*, K> sums;
    for (int k = 0; k < K; ++k) sums[size_t(k)] = partial.data() + size_t(omp_get_thread_num()) * width + k * stride;
#pragma omp for schedule(static)
    for (int64_t row = 0; row < rows; ++row) accumulate_row(row, sums);
  }
  // Result: [K][C], k-th sum of channel c at k * C + c.
  std::vector<double> total(static_cast<size_t>(K * channels), 0.0);
  for (int t = 0; t < threads; ++t)
    for (int k = 0; k < K; ++k)
      for (int64_t c = 0; c < channels; ++c)
        total[size_t(k) * size_t(channels) + size_t(c)] += partial[size_t(t) * width + size_t(k) * stride + size_t(c)];
  return total;
}

}  // namespace cuface::cpu
