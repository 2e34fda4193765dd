// CPU kernels of the class-sharded margin softmax (kernels/sharded_margin.h); the reference for
// kernels/cuda/sharded_margin.cu. One row per iteration, rows split over OpenMP threads, sums in double.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/labels.h"
#include "kernels/sharded_margin.h"

namespace cuface::cpu {

void sharded_margin_logits(Context&, Tensor& cos, const Tensor& labels, int64_t first_class, int64_t all_classes,
                           const MarginParams& params, Tensor& maxima, Tensor& target) {
  const int64_t rows = cos.size(0), classes = cos.size(1);
  float* z = cos.data<float>();
  const int32_t* y = labels.data<int32_t>();
  count_labelled_rows(y, rows, all_classes, "sharded_margin_logits");
  float *max_z = maxima.data<float>(), *max_cos = max_z + rows;
  float* t = target.data<float>();
#pragma omp parallel for schedule(static) if (rows * classes > 32768)
  for (int64_t i = 0; i < rows; ++i) {
    float* row = z + i * classes;
    float best_cos = -INFINITY;
    for (int64_t j = 0; j < classes; ++j) best_cos = std::max(best_cos, row[j]);
    const int64_t local = int64_t(y[i]) - first_class;  // the target's column here, if this rank owns it
    const bool owned = y[i] >= 0 && local >= 0 && local < classes;
    t[i] = 0.0f;
    t[rows + i] = t[2 * rows + i] = t[3 * rows + i] = 0.0f;
    float target_z = 0.0f;
    if (owned) {
      const MarginTarget margin = margin_target(params, row[local]);
      target_z = params.s * margin.value;
      t[rows + i] = target_z;
      t[2 * rows + i] = row[local];
      t[3 * rows + i] = margin.slope;
    }
    float best_z = -INFINITY;
    for (int64_t j = 0; j < classes; ++j) {
      row[j] *= params.s;
      best_z = std::max(best_z, row[j]);
    }
    if (owned) {
      row[local] = target_z;
      best_z = -INFINITY;
      for (int64_t j = 0; j < classes; ++j) best_z = std::max(best_z, row[j]);
    }
    max_z[i] = best_z;
    max_cos[i] = best_cos;
  }
}

void sharded_margin_exp_sums(Context&, const Tensor& z, const Tensor& maxima, Tensor& target) {
  const int64_t rows = z.size(0), classes = z.size(1);
  const float* pz = z.data<float>();
  const float* max_z = maxima.data<float>();
  float* t = target.data<float>();
#pragma omp parallel for schedule(static) if (rows * classes > 32768)
  for (int64_t i = 0; i < rows; ++i) {
    double sum = 0;
    for (int64_t j = 0; j < classes; ++j) sum += std::exp(double(pz[i * classes + j] - max_z[i]));
    t[i] = float(sum);
  }
}

void sharded_margin_gradient(Context&, Tensor& z, const Tensor& labels, int64_t first_class,
                             const MarginParams& params, const Tensor& maxima, const Tensor& target, Tensor& row_stats) {
  const int64_t rows = z.size(0), classes = z.size(1);
  float* pz = z.data<float>();
  const int32_t* y = labels.data<int32_t>();
  const float *max_z = maxima.data<float>(), *max_cos = max_z + rows;
  const float* t = target.data<float>();
  float* stats = row_stats.data<float>();
  int64_t labelled = 0;
  for (int64_t i = 0; i < rows; ++i) labelled += y[i] >= 0;
  const double weight = labelled ? 1.0 / double(labelled) : 0.0;
#pragma omp parallel for schedule(static) if (rows * classes > 32768)
  for (int64_t i = 0; i < rows; ++i) {
    float* row = pz + i * classes;
    float* out = stats + i * kRowStatColumns;
    if (y[i] < 0) {
      std::fill(row, row + classes, 0.0f);
      out[0] = out[1] = out[2] = 0.0f;
      continue;
    }
    const double sum = t[i], target_z = t[rows + i], target_cos = t[2 * rows + i], slope = t[3 * rows + i];
    out[0] = float(std::log(sum) + double(max_z[i]) - target_z);
    out[1] = target_cos >= double(max_cos[i]) ? 1.0f : 0.0f;
    out[2] = float(target_cos);
    // dL/dcos_j = s p_j / L, and at an owned target s (p_y - 1) f'(c) / L.
    const double scale = double(params.s) * weight;
    const int64_t local = int64_t(y[i]) - first_class;
    for (int64_t j = 0; j < classes; ++j) {
      const double p = std::exp(double(row[j] - max_z[i])) / sum;
      row[j] = float(j == local ? scale * (p - 1.0) * slope : scale * p);
    }
  }
}

}  // namespace cuface::cpu
