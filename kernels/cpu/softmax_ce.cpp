// CPU fused softmax cross-entropy: rows split over OpenMP threads, three passes over a row held in
// cache (max and argmax, exponentials and sums, gradient). The CUDA twin is kernels/cuda/softmax_ce.cu.
#include <cmath>

#include "kernels/cpu/labels.h"
#include "kernels/softmax_ce.h"

namespace cuface::cpu {

void softmax_ce(Context&, Tensor& logits, const Tensor& labels, float smoothing, Tensor& row_stats) {
  const int64_t rows = logits.size(0), classes = logits.size(1);
  float* z = logits.data<float>();
  const int32_t* y = labels.data<int32_t>();
  float* stats = row_stats.data<float>();
  const int64_t labelled = count_labelled_rows(y, rows, classes, "softmax_ce");
  const float weight = labelled ? 1.0f / float(labelled) : 0.0f;
  const float q_other = classes > 1 ? smoothing / float(classes - 1) : 0.0f;
  const float q_label = 1.0f - smoothing;

#pragma omp parallel for schedule(static) if (rows * classes > 32768)
  for (int64_t i = 0; i < rows; ++i) {
    float* row = z + i * classes;
    float* out = stats + i * kRowStatColumns;
    const int32_t label = y[i];
    if (label < 0) {
      for (int64_t j = 0; j < classes; ++j) row[j] = 0.0f;
      out[0] = out[1] = out[2] = 0.0f;
      continue;
    }
    int64_t best = 0;
    double z_sum = 0;
    for (int64_t j = 0; j < classes; ++j) {
      if (row[j] > row[best]) best = j;
      z_sum += row[j];
    }
    const float max = row[best];
    double exp_sum = 0;
    for (int64_t j = 0; j < classes; ++j) exp_sum += std::exp(double(row[j] - max));
    const double lse = max + std::log(exp_sum);
    const double q_dot_z = q_label * double(row[label]) + q_other * (z_sum - row[label]);
    out[0] = float(lse - q_dot_z);
    out[1] = best == label ? 1.0f : 0.0f;
    out[2] = float(std::exp(row[label] - lse));
    for (int64_t j = 0; j < classes; ++j) {
      const float p = float(std::exp(row[j] - lse));
      row[j] = (p - (j == label ? q_label : q_other)) * weight;
    }
  }
}

}  // namespace cuface::cpu
