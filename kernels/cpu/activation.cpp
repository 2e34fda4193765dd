// CPU activations (the definitions are in kernels/activation.h): plain loops over OpenMP threads,
// written for the auto-vectoriser; PReLU's slope gradient is a per-channel sum in double.
#include <algorithm>

#include "kernels/activation.h"
#include "kernels/cpu/channel_sums.h"

namespace cuface::cpu {

void relu_forward(Context&, const Tensor& x, Tensor& y) {
  const float* px = x.data<float>();
  float* py = y.data<float>();
  const int64_t n = y.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) py[i] = std::max(px[i], 0.0f);
}

void relu_backward(Context&, const Tensor& y, const Tensor& dy, Tensor& dx) {
  const float* py = y.data<float>();
  const float* pdy = dy.data<float>();
  float* pdx = dx.data<float>();
  const int64_t n = dx.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) pdx[i] = py[i] > 0.0f ? pdy[i] : 0.0f;
}

void add_relu(Context&, const Tensor& a, const Tensor& b, Tensor& y) {
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* py = y.data<float>();
  const int64_t n = y.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) py[i] = std::max(pa[i] + pb[i], 0.0f);
}

void prelu_forward(Context&, const Tensor& x, const Tensor& slope, Tensor& y) {
  const int64_t channels = x.size(-1), rows = x.numel() / channels;
  const float* px = x.data<float>();
  const float* a = slope.data<float>();
  float* py = y.data<float>();
#pragma omp parallel for schedule(static) if (rows * channels > 65536)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t base = row * channels;
    for (int64_t c = 0; c < channels; ++c) {
      const float v = px[base + c];
      py[base + c] = v > 0.0f ? v : a[c] * v;
    }
  }
}

void prelu_backward(Context&, const Tensor& x, const Tensor& slope, const Tensor& dy, Tensor& dx, Tensor& dslope) {
  const int64_t channels = x.size(-1), rows = x.numel() / channels;
  const float* px = x.data<float>();
  const float* a = slope.data<float>();
  const float* pdy = dy.data<float>();
  float* pdx = dx.data<float>();
  // The slope gradient first, so that dx may overwrite dy.
  if (dslope.defined()) {
    const std::vector<double> sums = channel_sums<1>(rows, channels, [&](int64_t row, std::array<double*, 1>& s) {
      const int64_t base = row * channels;
      double* sum = s[0];
      // The product is formed in float before the conversion: GCC (honouring -ftrapping-math) does not
      // vectorise a select that feeds a conversion.
      for (int64_t c = 0; c < channels; ++c) sum[c] += double(pdy[base + c] * std::min(px[base + c], 0.0f));
    });
    float* ds = dslope.data<float>();
    for (int64_t c = 0; c < channels; ++c) ds[c] += float(sums[size_t(c)]);
  }
#pragma omp parallel for schedule(static) if (rows * channels > 65536)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t base = row * channels;
    for (int64_t c = 0; c < channels; ++c) pdx[base + c] = px[base + c] > 0.0f ? pdy[base + c] : a[c] * pdy[base + c];
  }
}

}  // namespace cuface::cpu
