#include "kernels/loss_stats.h"

namespace cuface::cpu {

void reduce_row_stats(Context&, const Tensor& labels, const Tensor& row_stats, Tensor& stats) {
  const int64_t rows = labels.numel();
  const int32_t* y = labels.data<int32_t>();
  const float* r = row_stats.data<float>();
  double sums[kRowStatColumns] = {};
  int64_t labelled = 0;
  for (int64_t i = 0; i < rows; ++i) {
    if (y[i] < 0) continue;
    ++labelled;
    for (int c = 0; c < kRowStatColumns; ++c) sums[c] += r[i * kRowStatColumns + c];
  }
  float* out = stats.data<float>();
  for (int c = 0; c < kRowStatColumns; ++c) out[c] = labelled ? float(sums[c] / double(labelled)) : 0.0f;
  out[kRowStatColumns] = float(labelled);
}

}  // namespace cuface::cpu
