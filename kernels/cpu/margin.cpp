// CPU fused margin-softmax cross-entropy: the reference for kernels/cuda/margin.cu. Rows are split
// over OpenMP threads; each row is walked a few times while it sits in cache (argmax of the raw
// cosines, max, exponentials and their sum, gradient). Sums are in double.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/labels.h"
#include "kernels/margin.h"

namespace cuface::cpu {

void margin_softmax_ce(Context&, Tensor& cos, const Tensor& labels, const MarginParams& params, Tensor& row_stats) {
  const int64_t rows = cos.size(0), classes = cos.size(1);
  float* z = cos.data<float>();
  const int32_t* y = labels.data<int32_t>();
  float* stats = row_stats.data<float>();
  const int64_t labelled = count_labelled_rows(y, rows, classes, "margin_softmax_ce");
  const float s = params.s;
  const float weight = labelled ? 1.0f / float(labelled) : 0.0f;

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
    int64_t best = 0;  // argmax of the unmodified cosines, lowest index on ties
    for (int64_t j = 1; j < classes; ++j)
      if (row[j] > row[best]) best = j;
    const float target_cos = row[label];
    const MarginTarget target = margin_target(params, target_cos);
    row[label] = target.value;  // the row now holds z / s

    float max = row[0];
#pragma omp simd reduction(max : max)
    for (int64_t j = 0; j < classes; ++j) max = std::max(max, row[j]);
    double exp_sum = 0;
#pragma omp simd reduction(+ : exp_sum)
    for (int64_t j = 0; j < classes; ++j) {
      row[j] = std::exp(s * (row[j] - max));  // exp(z_j - max z)
      exp_sum += row[j];
    }
    // loss = lse(z) - z_y = s max + log(sum) - s f(c)
    out[0] = float(double(s) * (max - target.value) + std::log(exp_sum));
    out[1] = best == label ? 1.0f : 0.0f;
    out[2] = target_cos;

    // dL/dcos_j = s p_j / L, and at the target s (p_y - 1) f'(c) / L.
    const float to_gradient = float(s * weight / exp_sum);
    const float p_label = float(row[label] / exp_sum);
#pragma omp simd
    for (int64_t j = 0; j < classes; ++j) row[j] *= to_gradient;
    row[label] = s * weight * (p_label - 1.0f) * target.slope;
  }
}

}  // namespace cuface::cpu
