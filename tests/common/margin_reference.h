// Float64 unfused reference of the margin-softmax heads, written from the papers' formulas and
// independent of kernels/margin.h's code: normalise, GEMM, margin on the target, softmax, cross-entropy.
// Its gradient at the target uses a central difference of the margin function, so the chain rule of
// the fused kernels is checked, not copied.
#pragma once
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernels/margin.h"

namespace cuface::testing {

// Every margin the heads implement, with ArcFace's easy-margin variant, for parameterised tests.
inline std::vector<MarginParams> all_margins() {
  MarginParams easy = default_margin_params(MarginType::ArcFace);
  easy.easy_margin = true;
  return {default_margin_params(MarginType::ArcFace), easy, default_margin_params(MarginType::CosFace),
          default_margin_params(MarginType::Combined)};
}

inline std::string describe(const MarginParams& p) {
  return std::string(margin_type_name(p.type)) + (p.easy_margin ? " (easy margin)" : "");
}

// f(c) of each margin, in double.
inline double reference_margin(const MarginParams& p, double c) {
  c = std::clamp(c, -1.0, 1.0);
  const double theta = std::acos(c);
  switch (p.type) {
    case MarginType::CosFace: return c - p.m;
    case MarginType::Combined: return std::cos(p.m1 * theta + p.m2) - p.m3;
    case MarginType::ArcFace: break;
  }
  if (p.easy_margin) return c > 0 ? std::cos(theta + p.m) : c;
  // theta + m > pi: InsightFace's fallback c - m sin(m).
  return c > std::cos(M_PI - p.m) ? std::cos(theta + p.m) : c - p.m * std::sin(p.m);
}

struct ReferenceResult {
  double loss = 0;                  // mean over labelled rows
  std::vector<double> row_loss;     // 0 for ignored rows
  std::vector<int> correct;         // argmax of raw cosines == label
  std::vector<double> dcos;         // dL/dcos [N, C]
  int labelled = 0;
};

// cos [N, C] row-major; labels -1 are ignored.
inline ReferenceResult reference_margin_ce(const std::vector<double>& cos, int64_t n, int64_t c,
                                           const std::vector<int>& labels, const MarginParams& p) {
  ReferenceResult r;
  r.row_loss.assign(size_t(n), 0.0);
  r.correct.assign(size_t(n), 0);
  r.dcos.assign(size_t(n * c), 0.0);
  for (int64_t i = 0; i < n; ++i) r.labelled += labels[size_t(i)] >= 0;
  for (int64_t i = 0; i < n; ++i) {
    const int y = labels[size_t(i)];
    if (y < 0) continue;
    const double* row = cos.data() + i * c;
    std::vector<double> z(static_cast<size_t>(c));
    for (int64_t j = 0; j < c; ++j) z[size_t(j)] = p.s * row[j];
    z[size_t(y)] = p.s * reference_margin(p, row[y]);
    const double max = *std::max_element(z.begin(), z.end());
    double sum = 0;
    for (double v : z) sum += std::exp(v - max);
    const double lse = max + std::log(sum);
    r.row_loss[size_t(i)] = lse - z[size_t(y)];
    r.correct[size_t(i)] = std::max_element(row, row + c) - row == y;
    const double h = 1e-6;
    const double slope = (reference_margin(p, row[y] + h) - reference_margin(p, row[y] - h)) / (2 * h);
    for (int64_t j = 0; j < c; ++j) {
      const double prob = std::exp(z[size_t(j)] - lse);
      r.dcos[size_t(i * c + j)] = j == y ? p.s * (prob - 1) * slope / r.labelled : p.s * prob / r.labelled;
    }
  }
  for (double l : r.row_loss) r.loss += l;
  r.loss = r.labelled ? r.loss / r.labelled : 0.0;
  return r;
}

// Rows of `a` [rows, d] divided by their norms.
inline std::vector<double> reference_normalise(const std::vector<double>& a, int64_t rows, int64_t d) {
  std::vector<double> out(a);
  for (int64_t i = 0; i < rows; ++i) {
    double sum = 0;
    for (int64_t k = 0; k < d; ++k) sum += a[size_t(i * d + k)] * a[size_t(i * d + k)];
    const double norm = std::max(std::sqrt(sum), 1e-12);
    for (int64_t k = 0; k < d; ++k) out[size_t(i * d + k)] /= norm;
  }
  return out;
}

// cos = normalise(x) normalise(W)^T for x [n, d], W [c, d].
inline std::vector<double> reference_cosines(const std::vector<double>& x, const std::vector<double>& w, int64_t n,
                                             int64_t c, int64_t d) {
  const std::vector<double> xn = reference_normalise(x, n, d), wn = reference_normalise(w, c, d);
  std::vector<double> cos(size_t(n * c));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < c; ++j) {
      double dot = 0;
      for (int64_t k = 0; k < d; ++k) dot += xn[size_t(i * d + k)] * wn[size_t(j * d + k)];
      cos[size_t(i * c + j)] = dot;
    }
  return cos;
}

}  // namespace cuface::testing
