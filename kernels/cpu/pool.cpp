// CPU pooling: loops over output (or input) pixels split across threads, the channel loop innermost
// and contiguous (NHWC), so it vectorises. The CUDA twins are in kernels/cuda/pool.cu.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/pool.h"

namespace cuface::cpu {

void max_pool2d_forward(Context&, const Tensor& x, Tensor& y, Tensor& argmax, const Pool2dGeometry& g) {
  const int64_t n_count = x.size(0), h = x.size(1), w = x.size(2), channels = x.size(3);
  const int64_t oh_count = y.size(1), ow_count = y.size(2);
  const float* px = x.data<float>();
  float* py = y.data<float>();
  int32_t* pidx = argmax.data<int32_t>();
#pragma omp parallel for schedule(static) if (y.numel() * g.kernel * g.kernel > 65536)
  for (int64_t row = 0; row < n_count * oh_count; ++row) {
    const int64_t n = row / oh_count, oh = row % oh_count;
    const int64_t h0 = oh * g.stride - g.padding;
    const int64_t kh_begin = std::max<int64_t>(0, -h0), kh_end = std::min(g.kernel, h - h0);
    for (int64_t ow = 0; ow < ow_count; ++ow) {
      const int64_t w0 = ow * g.stride - g.padding;
      const int64_t kw_begin = std::max<int64_t>(0, -w0), kw_end = std::min(g.kernel, w - w0);
      float* __restrict best = py + (row * ow_count + ow) * channels;
      int32_t* __restrict winner = pidx + (row * ow_count + ow) * channels;
      const int32_t first = int32_t((h0 + kh_begin) * w + w0 + kw_begin);
      for (int64_t c = 0; c < channels; ++c) {
        best[c] = -std::numeric_limits<float>::infinity();
        winner[c] = first;
      }
      for (int64_t kh = kh_begin; kh < kh_end; ++kh)
        for (int64_t kw = kw_begin; kw < kw_end; ++kw) {
          const int32_t position = int32_t((h0 + kh) * w + w0 + kw);
          const float* __restrict v = px + ((n * h + h0 + kh) * w + w0 + kw) * channels;
          for (int64_t c = 0; c < channels; ++c) {
            const bool wins = v[c] > best[c] || std::isnan(v[c]);
            best[c] = wins ? v[c] : best[c];
            winner[c] = wins ? position : winner[c];
          }
        }
    }
  }
}

void max_pool2d_backward(Context&, const Tensor& dy, const Tensor& argmax, Tensor& dx, const Pool2dGeometry& g) {
  const int64_t n_count = dx.size(0), h = dx.size(1), w = dx.size(2), channels = dx.size(3);
  const int64_t oh_count = dy.size(1), ow_count = dy.size(2);
  const float* pdy = dy.data<float>();
  const int32_t* pidx = argmax.data<int32_t>();
  float* pdx = dx.data<float>();
  // Output rows whose window covers input row i: oh * stride - pad <= i <= oh * stride - pad + kernel - 1.
  auto first_window = [&](int64_t i) { return std::max<int64_t>(0, (i + g.padding - g.kernel + g.stride) / g.stride); };
  auto last_window = [&](int64_t i, int64_t count) { return std::min(count - 1, (i + g.padding) / g.stride); };
#pragma omp parallel for schedule(static) if (dx.numel() > 65536)
  for (int64_t row = 0; row < n_count * h; ++row) {
    const int64_t n = row / h, ih = row % h;
    for (int64_t iw = 0; iw < w; ++iw) {
      float* __restrict out = pdx + (row * w + iw) * channels;
      for (int64_t c = 0; c < channels; ++c) out[c] = 0.0f;
      const int32_t position = int32_t(ih * w + iw);
      for (int64_t oh = first_window(ih); oh <= last_window(ih, oh_count); ++oh)
        for (int64_t ow = first_window(iw); ow <= last_window(iw, ow_count); ++ow) {
          const int64_t offset = ((n * oh_count + oh) * ow_count + ow) * channels;
          const float* __restrict grad = pdy + offset;
          const int32_t* __restrict winner = pidx + offset;
          for (int64_t c = 0; c < channels; ++c) out[c] += winner[c] == position ? grad[c] : 0.0f;
        }
    }
  }
}

void global_avg_pool_forward(Context&, const Tensor& x, Tensor& y) {
  const int64_t n_count = x.size(0), pixels = x.size(1) * x.size(2), channels = x.size(3);
  const float* px = x.data<float>();
  float* py = y.data<float>();
#pragma omp parallel for schedule(static) if (x.numel() > 65536)
  for (int64_t n = 0; n < n_count; ++n) {
    float* __restrict sum = py + n * channels;
    for (int64_t c = 0; c < channels; ++c) sum[c] = 0.0f;
    for (int64_t p = 0; p < pixels; ++p) {
      const float* __restrict v = px + (n * pixels + p) * channels;
      for (int64_t c = 0; c < channels; ++c) sum[c] += v[c];
    }
    for (int64_t c = 0; c < channels; ++c) sum[c] /= float(pixels);
  }
}

void global_avg_pool_backward(Context&, const Tensor& dy, Tensor& dx) {
  const int64_t n_count = dx.size(0), pixels = dx.size(1) * dx.size(2), channels = dx.size(3);
  const float* pdy = dy.data<float>();
  float* pdx = dx.data<float>();
  const float scale = 1.0f / float(pixels);
#pragma omp parallel for schedule(static) if (dx.numel() > 65536)
  for (int64_t row = 0; row < n_count * pixels; ++row) {
    const float* __restrict grad = pdy + (row / pixels) * channels;
    float* __restrict out = pdx + row * channels;
    for (int64_t c = 0; c < channels; ++c) out[c] = grad[c] * scale;
  }
}

}  // namespace cuface::cpu
