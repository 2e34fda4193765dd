// CPU batch normalisation (the math is in kernels/batchnorm.h). Statistics and gradient sums are
// accumulated in double per channel (kernels/cpu/channel_sums.h); the element-wise passes run in
// float, split over rows, and vectorise over the contiguous channels.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/activation.h"
#include "kernels/batchnorm.h"
#include "kernels/cpu/channel_sums.h"

namespace cuface::cpu {

namespace {

// y = x * scale[c] + shift[c] [+ residual] (then max(., 0)): normalisation and affine folded into one
// multiply-add, the residual join added in the same pass.
template <bool kResidual, bool kRelu>
void normalize_rows(const float* px, const float* pr, const float* s, const float* t, int64_t rows, int64_t channels,
                    float* py) {
#pragma omp parallel for schedule(static) if (rows * channels > 65536)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t base = row * channels;
    for (int64_t c = 0; c < channels; ++c) {
      float v = px[base + c] * s[c] + t[c];
      if constexpr (kResidual) v += pr[base + c];
      if constexpr (kRelu) v = std::max(v, 0.0f);
      py[base + c] = v;
    }
  }
}

void normalize(const Tensor& x, const Tensor& residual, const std::vector<float>& scale,
               const std::vector<float>& shift, bool relu, Tensor& y) {
  const int64_t channels = x.size(-1), rows = x.numel() / channels;
  const float* px = x.data<float>();
  const float* pr = residual.defined() ? residual.data<float>() : nullptr;
  float* py = y.data<float>();
  const float* s = scale.data();
  const float* t = shift.data();
  if (pr)
    relu ? normalize_rows<true, true>(px, pr, s, t, rows, channels, py)
         : normalize_rows<true, false>(px, pr, s, t, rows, channels, py);
  else
    relu ? normalize_rows<false, true>(px, pr, s, t, rows, channels, py)
         : normalize_rows<false, false>(px, pr, s, t, rows, channels, py);
}

// scale = gamma * invstd, shift = beta - mean * scale (gamma, beta undefined: 1, 0).
void fold_affine(const Tensor& gamma, const Tensor& beta, const float* mean, const float* invstd, int64_t channels,
                 std::vector<float>& scale, std::vector<float>& shift) {
  scale.resize(size_t(channels));
  shift.resize(size_t(channels));
  for (int64_t c = 0; c < channels; ++c) {
    const float g = gamma.defined() ? gamma.data<float>()[c] : 1.0f;
    const float b = beta.defined() ? beta.data<float>()[c] : 0.0f;
    scale[size_t(c)] = g * invstd[c];
    shift[size_t(c)] = b - mean[c] * scale[size_t(c)];
  }
}

}  // namespace

void batch_norm_forward_train(Context&, const Tensor& x, const Tensor& residual, const Tensor& gamma,
                              const Tensor& beta, float eps, float momentum, bool relu, Tensor& running_mean,
                              Tensor& running_var, Tensor& num_batches_tracked, Tensor& y, Tensor& mean,
                              Tensor& invstd) {
  const int64_t channels = x.size(-1), rows = x.numel() / channels;
  const float* px = x.data<float>();
  // Per channel: sum x and sum x^2 (result: sums[c], sums[C + c]). In double the cancellation in
  // E[x^2] - mean^2 costs about log10(mean^2 / var) of its ~16 digits: harmless for any activation.
  const std::vector<double> sums = channel_sums<2>(rows, channels, [&](int64_t row, std::array<double*, 2>& s) {
    const float* xr = px + row * channels;
    double *sum = s[0], *sum_squares = s[1];
    for (int64_t c = 0; c < channels; ++c) {
      const double v = xr[c];
      sum[c] += v;
      sum_squares[c] += v * v;
    }
  });
  float* m = mean.data<float>();
  float* is = invstd.data<float>();
  float* rm = running_mean.data<float>();
  float* rv = running_var.data<float>();
  for (int64_t c = 0; c < channels; ++c) {
    const double batch_mean = sums[size_t(c)] / double(rows);
    const double batch_var = std::max(sums[size_t(channels + c)] / double(rows) - batch_mean * batch_mean, 0.0);
    m[c] = float(batch_mean);
    is[c] = float(1.0 / std::sqrt(batch_var + double(eps)));
    const double unbiased_var = batch_var * double(rows) / double(rows - 1);
    rm[c] = float((1.0 - momentum) * rm[c] + momentum * batch_mean);
    rv[c] = float((1.0 - momentum) * rv[c] + momentum * unbiased_var);
  }
  if (num_batches_tracked.defined()) num_batches_tracked.data<int32_t>()[0] += 1;
  std::vector<float> scale, shift;
  fold_affine(gamma, beta, m, is, channels, scale, shift);
  normalize(x, residual, scale, shift, relu, y);
}

void batch_norm_forward_eval(Context&, const Tensor& x, const Tensor& residual, const Tensor& gamma,
                             const Tensor& beta, const Tensor& running_mean, const Tensor& running_var, float eps,
                             bool relu, Tensor& y, Tensor& mean, Tensor& invstd) {
  const int64_t channels = x.size(-1);
  float* m = mean.data<float>();
  float* is = invstd.data<float>();
  for (int64_t c = 0; c < channels; ++c) {
    m[c] = running_mean.data<float>()[c];
    is[c] = float(1.0 / std::sqrt(double(running_var.data<float>()[c]) + double(eps)));
  }
  std::vector<float> scale, shift;
  fold_affine(gamma, beta, m, is, channels, scale, shift);
  normalize(x, residual, scale, shift, relu, y);
}

namespace {

// dy masked where the fused ReLU clamped (y == 0). The ReLU is a template parameter rather than a
// run-time test, and the mask is applied to dy's bits rather than by a branch: GCC, honouring
// -ftrapping-math, will not turn a float select that feeds a double conversion into vector code, and
// either obstacle made backward 3 to 7 times slower.
template <bool kRelu>
inline float masked_gradient(const float* y, const float* dy, int64_t i) {
  if constexpr (kRelu) {
    const uint32_t keep = y[i] > 0.0f ? 0xffffffffu : 0u;
    return bits_float(float_bits(dy[i]) & keep);
  } else {
    return dy[i];
  }
}

template <bool kRelu>
void backward(const Tensor& x, const Tensor& y, const Tensor& dy, const Tensor& gamma, const Tensor& mean,
              const Tensor& invstd, bool batch_stats, Tensor& dx, Tensor& dgamma, Tensor& dbeta) {
  const int64_t channels = x.size(-1), rows = x.numel() / channels;
  const float* px = x.data<float>();
  const float* py = kRelu ? y.data<float>() : nullptr;
  const float* pdy = dy.data<float>();
  const float* m = mean.data<float>();
  const float* is = invstd.data<float>();
  // g = dy, masked. Per channel: sum g and sum g * xhat (result: sums[c], sums[C + c]).
  const std::vector<double> sums = channel_sums<2>(rows, channels, [&](int64_t row, std::array<double*, 2>& s) {
    const int64_t base = row * channels;
    double *sum_g = s[0], *sum_gxhat = s[1];
    for (int64_t c = 0; c < channels; ++c) {
      const float g = masked_gradient<kRelu>(py, pdy, base + c);
      const float xhat = (px[base + c] - m[c]) * is[c];
      sum_g[c] += g;
      sum_gxhat[c] += double(g) * xhat;
    }
  });
  if (dbeta.defined())
    for (int64_t c = 0; c < channels; ++c) dbeta.data<float>()[c] += float(sums[size_t(c)]);
  if (dgamma.defined())
    for (int64_t c = 0; c < channels; ++c) dgamma.data<float>()[c] += float(sums[size_t(channels + c)]);

  // dx = k * (g - mean_g - xhat * mean_gxhat), k = gamma * invstd; the two means vanish for running stats.
  std::vector<float> coefficients(3 * size_t(channels), 0.0f);
  float* k = coefficients.data();
  float* mean_g = k + channels;
  float* mean_gxhat = mean_g + channels;
  for (int64_t c = 0; c < channels; ++c) {
    k[c] = (gamma.defined() ? gamma.data<float>()[c] : 1.0f) * is[c];
    if (batch_stats) {
      mean_g[c] = float(sums[size_t(c)] / double(rows));
      mean_gxhat[c] = float(sums[size_t(channels + c)] / double(rows));
    }
  }
  float* pdx = dx.data<float>();
#pragma omp parallel for schedule(static) if (rows * channels > 65536)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t base = row * channels;
    for (int64_t c = 0; c < channels; ++c) {
      const float g = masked_gradient<kRelu>(py, pdy, base + c);
      const float xhat = (px[base + c] - m[c]) * is[c];
      pdx[base + c] = k[c] * (g - mean_g[c] - xhat * mean_gxhat[c]);
    }
  }
}

}  // namespace

void batch_norm_backward(Context& ctx, const Tensor& x, const Tensor& y, const Tensor& dy, const Tensor& gamma,
                         const Tensor& mean, const Tensor& invstd, bool batch_stats, bool relu, Tensor& dx,
                         Tensor& dresidual, Tensor& dgamma, Tensor& dbeta) {
  if (dresidual.defined()) {
    // The residual's gradient g first, by the vectorised ReLU mask, then the plain backward from g.
    // On the CPU this beats storing g from inside the statistics pass as the CUDA kernel does
    // (bench_norm, one thread, 28x28x256: 817 against 1317 us), though it reads dy and y in a pass
    // of their own.
    if (relu)
      cpu::relu_backward(ctx, y, dy, dresidual);
    else
      dresidual.copy_from(dy);
    backward<false>(x, y, dresidual, gamma, mean, invstd, batch_stats, dx, dgamma, dbeta);
  } else if (relu) {
    backward<true>(x, y, dy, gamma, mean, invstd, batch_stats, dx, dgamma, dbeta);
  } else {
    backward<false>(x, y, dy, gamma, mean, invstd, batch_stats, dx, dgamma, dbeta);
  }
}

// ---- synchronised BatchNorm ------------------------------------------------------------------------

void batch_norm_moments(Context&, const Tensor& x, const Tensor& shift, Tensor& moments) {
  const int64_t channels = x.size(-1), rows = x.numel() / channels;
  const float* px = x.data<float>();
  const float* ps = shift.data<float>();
  const std::vector<double> sums = channel_sums<2>(rows, channels, [&](int64_t row, std::array<double*, 2>& s) {
    const float* xr = px + row * channels;
    for (int64_t c = 0; c < channels; ++c) {
      const double v = double(xr[c]) - double(ps[c]);
      s[0][c] += v;
      s[1][c] += v * v;
    }
  });
  for (int64_t i = 0; i < 2 * channels; ++i) moments.data<float>()[i] = float(sums[size_t(i)]);
}

void batch_norm_stats_from_moments(Context&, const Tensor& moments, int64_t count, float momentum,
                                   Tensor& running_mean, Tensor& running_var, Tensor& num_batches_tracked,
                                   Tensor& mean, Tensor& var) {
  const int64_t channels = running_mean.numel();
  const float* s = moments.data<float>();
  float* rm = running_mean.data<float>();
  float* rv = running_var.data<float>();
  for (int64_t c = 0; c < channels; ++c) {
    const double offset = double(s[c]) / double(count);  // mean - shift
    const double batch_var = std::max(double(s[channels + c]) / double(count) - offset * offset, 0.0);
    const double batch_mean = double(rm[c]) + offset;  // the shift is the running mean
    mean.data<float>()[c] = float(batch_mean);
    var.data<float>()[c] = float(batch_var);
    rm[c] = float((1.0 - momentum) * rm[c] + momentum * batch_mean);
    rv[c] = float((1.0 - momentum) * rv[c] + momentum * batch_var * double(count) / double(count - 1));
  }
  if (num_batches_tracked.defined()) num_batches_tracked.data<int32_t>()[0] += 1;
}

void batch_norm_sync_input_grad(Context&, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                                const Tensor& invstd, const Tensor& sums, int64_t count, Tensor& dx) {
  const int64_t channels = x.size(-1), rows = x.numel() / channels;
  // dx -= k * (mean_g + xhat * mean_gxhat) = a[c] + b[c] * (x - mean), per channel.
  std::vector<float> a(static_cast<size_t>(channels)), b(static_cast<size_t>(channels));
  const float* m = mean.data<float>();
  const float* is = invstd.data<float>();
  for (int64_t c = 0; c < channels; ++c) {
    const float k = (gamma.defined() ? gamma.data<float>()[c] : 1.0f) * is[c];
    a[size_t(c)] = k * float(double(sums.data<float>()[c]) / double(count));
    b[size_t(c)] = k * is[c] * float(double(sums.data<float>()[channels + c]) / double(count));
  }
  const float* px = x.data<float>();
  float* pdx = dx.data<float>();
#pragma omp parallel for schedule(static) if (rows * channels > 65536)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t base = row * channels;
    for (int64_t c = 0; c < channels; ++c) pdx[base + c] -= a[size_t(c)] + b[size_t(c)] * (px[base + c] - m[c]);
  }
}

}  // namespace cuface::cpu
