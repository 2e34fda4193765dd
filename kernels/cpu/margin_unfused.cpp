// CPU unfused margin chain: each pass is its own loop over the whole [N, C] matrix (see
// kernels/margin_unfused.h); the fused version is kernels/cpu/margin.cpp.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/labels.h"
#include "kernels/margin_unfused.h"

namespace cuface::cpu {

void margin_softmax_ce_unfused(Context&, Tensor& cos, const Tensor& labels, const MarginParams& params,
                               Tensor& row_stats) {
  const int64_t rows = cos.size(0), classes = cos.size(1), total = rows * classes;
  const int32_t* y = labels.data<int32_t>();
  float* c = cos.data<float>();
  Tensor onehot_t = Tensor::empty({rows, classes}), phi_t = Tensor::empty({rows, classes});
  Tensor logits_t = Tensor::empty({rows, classes}), probs_t = Tensor::empty({rows, classes});
  float *onehot = onehot_t.data<float>(), *phi = phi_t.data<float>(), *z = logits_t.data<float>(), *p = probs_t.data<float>();
  std::vector<float> row_max(static_cast<size_t>(rows)), row_sum(static_cast<size_t>(rows));
  const int64_t labelled = count_labelled_rows(y, rows, classes, "margin_softmax_ce_unfused");
  const float s = params.s, scale = labelled ? s / float(labelled) : 0.0f;

#pragma omp parallel for schedule(static)
  for (int64_t e = 0; e < total; ++e) onehot[e] = y[e / classes] == e % classes ? 1.0f : 0.0f;
#pragma omp parallel for schedule(static)
  for (int64_t e = 0; e < total; ++e) phi[e] = margin_target(params, c[e]).value;
#pragma omp parallel for schedule(static)
  for (int64_t e = 0; e < total; ++e) z[e] = s * (onehot[e] * phi[e] + (1.0f - onehot[e]) * c[e]);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < rows; ++i) row_max[size_t(i)] = *std::max_element(z + i * classes, z + (i + 1) * classes);
#pragma omp parallel for schedule(static)
  for (int64_t e = 0; e < total; ++e) p[e] = std::exp(z[e] - row_max[size_t(e / classes)]);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < rows; ++i) {
    double sum = 0;
    for (int64_t j = 0; j < classes; ++j) sum += p[i * classes + j];
    row_sum[size_t(i)] = float(sum);
  }
#pragma omp parallel for schedule(static)
  for (int64_t e = 0; e < total; ++e) p[e] /= row_sum[size_t(e / classes)];
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < rows; ++i) {
    float* out = row_stats.data<float>() + i * kRowStatColumns;
    double loss = 0, target = 0;
    int64_t best = 0;
    for (int64_t j = 0; j < classes; ++j) {
      const int64_t e = i * classes + j;
      if (onehot[e] != 0.0f) loss -= z[e] - row_max[size_t(i)] - std::log(row_sum[size_t(i)]), target += c[e];
      if (c[e] > c[i * classes + best]) best = j;
    }
    out[0] = float(loss);
    out[1] = y[i] >= 0 && best == y[i] ? 1.0f : 0.0f;
    out[2] = float(target);
  }
#pragma omp parallel for schedule(static)
  for (int64_t e = 0; e < total; ++e) {
    const float slope = onehot[e] != 0.0f ? margin_target(params, c[e]).slope : 1.0f;
    c[e] = y[e / classes] < 0 ? 0.0f : scale * (p[e] - onehot[e]) * slope;
  }
}

}  // namespace cuface::cpu
