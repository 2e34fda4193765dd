// A naive float64 batch norm over [rows, C] data (channels last), for kernel and layer tests: two-pass
// statistics, and for backward the unfused textbook chain rule (through xhat, then var, then mean),
// deliberately not the compact formula the kernels use.
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

namespace cuface::testing {

struct BatchNormReference {
  std::vector<double> y, mean, invstd, running_mean, running_var;
};

// x: rows x C. gamma/beta empty: 1 and 0. train: batch statistics (two passes) and running update.
// residual (empty: none) is added to the normalised value before the ReLU: the unfused chain
// BatchNorm, then add, then ReLU.
inline BatchNormReference reference_batch_norm_forward(const std::vector<double>& x, int64_t C,
                                                       const std::vector<double>& gamma,
                                                       const std::vector<double>& beta,
                                                       std::vector<double> running_mean,
                                                       std::vector<double> running_var, double eps, double momentum,
                                                       bool train, bool relu,
                                                       const std::vector<double>& residual = {}) {
  const int64_t rows = int64_t(x.size()) / C;
  BatchNormReference r;
  r.y.resize(x.size());
  for (int64_t c = 0; c < C; ++c) {
    double mean = running_mean[size_t(c)], var = running_var[size_t(c)];
    if (train) {
      mean = 0;
      for (int64_t m = 0; m < rows; ++m) mean += x[size_t(m * C + c)];
      mean /= double(rows);
      var = 0;
      for (int64_t m = 0; m < rows; ++m) var += (x[size_t(m * C + c)] - mean) * (x[size_t(m * C + c)] - mean);
      var /= double(rows);
      running_mean[size_t(c)] = (1 - momentum) * running_mean[size_t(c)] + momentum * mean;
      running_var[size_t(c)] = (1 - momentum) * running_var[size_t(c)] + momentum * var * rows / (rows - 1);
    }
    const double invstd = 1 / std::sqrt(var + eps);
    const double g = gamma.empty() ? 1 : gamma[size_t(c)], b = beta.empty() ? 0 : beta[size_t(c)];
    for (int64_t m = 0; m < rows; ++m) {
      const double shortcut = residual.empty() ? 0 : residual[size_t(m * C + c)];
      const double z = g * (x[size_t(m * C + c)] - mean) * invstd + b + shortcut;
      r.y[size_t(m * C + c)] = relu ? std::max(z, 0.0) : z;
    }
    r.mean.push_back(mean);
    r.invstd.push_back(invstd);
  }
  r.running_mean = running_mean;
  r.running_var = running_var;
  return r;
}

struct BatchNormReferenceGrads {
  std::vector<double> dx, dgamma, dbeta;
  std::vector<double> dz;  // dL/d(BatchNorm output) = dL/d(residual): dy through the ReLU's mask
};

// The chain rule step by step (not the compact formula the kernels use): through xhat, then var,
// then mean. `y` supplies the ReLU mask.
inline BatchNormReferenceGrads reference_batch_norm_backward(const std::vector<double>& x, const std::vector<double>& y,
                                                             const std::vector<double>& dy, int64_t C,
                                                             const std::vector<double>& gamma,
                                                             const std::vector<double>& mean,
                                                             const std::vector<double>& invstd, bool train, bool relu) {
  const int64_t rows = int64_t(x.size()) / C;
  const double M = double(rows);
  BatchNormReferenceGrads r;
  r.dx.resize(x.size());
  for (int64_t c = 0; c < C; ++c) {
    const double g = gamma.empty() ? 1 : gamma[size_t(c)], mu = mean[size_t(c)], is = invstd[size_t(c)];
    double dgamma = 0, dbeta = 0, dvar = 0, dmean = 0, centered_sum = 0;
    std::vector<double> dz(static_cast<size_t>(rows));
    for (int64_t m = 0; m < rows; ++m) {
      const size_t i = size_t(m * C + c);
      dz[size_t(m)] = relu && !(y[i] > 0) ? 0.0 : dy[i];
      dgamma += dz[size_t(m)] * (x[i] - mu) * is;
      dbeta += dz[size_t(m)];
      const double dxhat = dz[size_t(m)] * g;
      dvar += dxhat * (x[i] - mu) * -0.5 * is * is * is;  // d/dvar of (var + eps)^(-1/2)
      dmean += -dxhat * is;
      centered_sum += x[i] - mu;
    }
    dmean += dvar * -2.0 * centered_sum / M;  // zero in exact arithmetic, kept for the textbook form
    for (int64_t m = 0; m < rows; ++m) {
      const size_t i = size_t(m * C + c);
      const double dxhat = dz[size_t(m)] * g;
      r.dx[i] = train ? dxhat * is + dvar * 2.0 * (x[i] - mu) / M + dmean / M : dxhat * is;
    }
    r.dgamma.push_back(dgamma);
    r.dbeta.push_back(dbeta);
    r.dz.resize(x.size());
    for (int64_t m = 0; m < rows; ++m) r.dz[size_t(m * C + c)] = dz[size_t(m)];
  }
  return r;
}

}  // namespace cuface::testing
