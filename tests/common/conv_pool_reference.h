// Naive float64 references for convolution, pooling and linear layers, written straight from the
// definitions (no im2col, no gather tricks), plus the element-wise error bound the tests assert.
//
// Each reference returns the exact-in-double value of every output element and the sum of the
// absolute values of the terms that make it up. A float32 code that sums n products in any order
// has |error| <= gamma(n) * sum |terms| with gamma(n) = n u / (1 - n u), u = 2^-24 (Higham,
// "Accuracy and Stability of Numerical Algorithms", 3.1): a rigorous bound that holds for blocked,
// multi-threaded and FMA summation alike, and that a wrong index or a missing term violates.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common/reference.h"
#include "engine/context.h"
#include "engine/safetensors.h"
#include "kernels/conv.h"
#include "kernels/pool.h"
#include "common/source_dir.h"

namespace cuface::testing {

struct Reference {
  std::vector<double> value;
  std::vector<double> magnitude;  // sum of |terms| per element
};

inline double gamma_bound(int64_t terms) {
  const double nu = double(terms) * std::ldexp(1.0, -24);
  return nu / (1.0 - nu);
}

// Asserts every element of `got` (CPU f32) within gamma(terms) * magnitude of the reference (plus a
// denormal-sized slack), and the norm-wise relative error below `norm_bound`.
inline void expect_matches_reference(const Tensor& got, const Reference& ref, int64_t terms, double norm_bound,
                                     const std::string& what) {
  const std::vector<double> g = to_doubles(got);
  ASSERT_EQ(g.size(), ref.value.size()) << what;
  const double gamma = gamma_bound(terms);
  for (size_t i = 0; i < g.size(); ++i) {
    const double allowed = gamma * ref.magnitude[i] + 1e-30;
    ASSERT_LE(std::abs(g[i] - ref.value[i]), allowed)
        << what << ": element " << i << " is " << g[i] << ", reference " << ref.value[i];
  }
  EXPECT_LT(relative_error(g, ref.value), norm_bound) << what;
}

// ---- convolution: x [N, H, W, C], w [O, KH, KW, C] (OHWI), y [N, OH, OW, O] ----------------------

struct ConvProblem {
  int64_t n, h, w, c, o, kh, kw;
  Conv2dGeometry g;
  int64_t oh() const { return (h + 2 * g.pad_h - kh) / g.stride_h + 1; }
  int64_t ow() const { return (w + 2 * g.pad_w - kw) / g.stride_w + 1; }
  Shape x_shape() const { return {n, h, w, c}; }
  Shape w_shape() const { return {o, kh, kw, c}; }
  Shape y_shape() const { return {n, oh(), ow(), o}; }
  std::string str() const {
    return "x " + x_shape().str() + " w " + w_shape().str() + " stride " + std::to_string(g.stride_h) + "x" +
           std::to_string(g.stride_w) + " pad " + std::to_string(g.pad_h) + "x" + std::to_string(g.pad_w);
  }
};

// Calls f(x_index, w_index, y_index) for every product x[x_index] * w[w_index] that enters y[y_index].
template <class F>
void for_each_conv_term(const ConvProblem& p, F f) {
  for (int64_t n = 0; n < p.n; ++n)
    for (int64_t oh = 0; oh < p.oh(); ++oh)
      for (int64_t ow = 0; ow < p.ow(); ++ow)
        for (int64_t o = 0; o < p.o; ++o)
          for (int64_t kh = 0; kh < p.kh; ++kh)
            for (int64_t kw = 0; kw < p.kw; ++kw) {
              const int64_t ih = oh * p.g.stride_h - p.g.pad_h + kh, iw = ow * p.g.stride_w - p.g.pad_w + kw;
              if (ih < 0 || ih >= p.h || iw < 0 || iw >= p.w) continue;
              for (int64_t c = 0; c < p.c; ++c)
                f(((n * p.h + ih) * p.w + iw) * p.c + c, ((o * p.kh + kh) * p.kw + kw) * p.c + c,
                  ((n * p.oh() + oh) * p.ow() + ow) * p.o + o);
            }
}

inline Reference conv2d_forward_reference(const ConvProblem& p, const Tensor& x, const Tensor& w) {
  Reference r{std::vector<double>(size_t(p.y_shape().numel())), std::vector<double>(size_t(p.y_shape().numel()))};
  const float* px = x.data<float>();
  const float* pw = w.data<float>();
  for_each_conv_term(p, [&](int64_t xi, int64_t wi, int64_t yi) {
    const double term = double(px[xi]) * double(pw[wi]);
    r.value[size_t(yi)] += term;
    r.magnitude[size_t(yi)] += std::abs(term);
  });
  return r;
}

inline Reference conv2d_backward_data_reference(const ConvProblem& p, const Tensor& dy, const Tensor& w) {
  Reference r{std::vector<double>(size_t(p.x_shape().numel())), std::vector<double>(size_t(p.x_shape().numel()))};
  const float* pdy = dy.data<float>();
  const float* pw = w.data<float>();
  for_each_conv_term(p, [&](int64_t xi, int64_t wi, int64_t yi) {
    const double term = double(pdy[yi]) * double(pw[wi]);
    r.value[size_t(xi)] += term;
    r.magnitude[size_t(xi)] += std::abs(term);
  });
  return r;
}

// dw = initial + sum of terms (the kernel accumulates into dw).
inline Reference conv2d_backward_filter_reference(const ConvProblem& p, const Tensor& x, const Tensor& dy,
                                                  const Tensor& initial) {
  Reference r{to_doubles(initial), std::vector<double>(size_t(initial.numel()))};
  for (size_t i = 0; i < r.value.size(); ++i) r.magnitude[i] = std::abs(r.value[i]);
  const float* px = x.data<float>();
  const float* pdy = dy.data<float>();
  for_each_conv_term(p, [&](int64_t xi, int64_t wi, int64_t yi) {
    const double term = double(px[xi]) * double(pdy[yi]);
    r.value[size_t(wi)] += term;
    r.magnitude[size_t(wi)] += std::abs(term);
  });
  return r;
}

// ---- pooling ------------------------------------------------------------------------------------

// y, and the argmax index (ih * W + iw) of the first maximum in scan order.
inline std::pair<std::vector<double>, std::vector<int32_t>> max_pool2d_reference(const Tensor& x,
                                                                                 const Pool2dGeometry& g) {
  const int64_t n_count = x.size(0), h = x.size(1), w = x.size(2), channels = x.size(3);
  const int64_t oh_count = (h + 2 * g.padding - g.kernel) / g.stride + 1;
  const int64_t ow_count = (w + 2 * g.padding - g.kernel) / g.stride + 1;
  std::vector<double> y;
  std::vector<int32_t> argmax;
  const float* px = x.data<float>();
  for (int64_t n = 0; n < n_count; ++n)
    for (int64_t oh = 0; oh < oh_count; ++oh)
      for (int64_t ow = 0; ow < ow_count; ++ow)
        for (int64_t c = 0; c < channels; ++c) {
          double best = -INFINITY;
          int32_t winner = -1;
          for (int64_t kh = 0; kh < g.kernel; ++kh)
            for (int64_t kw = 0; kw < g.kernel; ++kw) {
              const int64_t ih = oh * g.stride - g.padding + kh, iw = ow * g.stride - g.padding + kw;
              if (ih < 0 || ih >= h || iw < 0 || iw >= w) continue;
              const double v = px[((n * h + ih) * w + iw) * channels + c];
              if (winner < 0 || v > best) {
                best = v;
                winner = int32_t(ih * w + iw);
              }
            }
          y.push_back(best);
          argmax.push_back(winner);
        }
  return {y, argmax};
}

// dx from dy and the reference argmax, by scattering (the kernels gather).
inline std::vector<double> max_pool2d_backward_reference(const Shape& x_shape, const Tensor& dy,
                                                         const std::vector<int32_t>& argmax) {
  std::vector<double> dx(size_t(x_shape.numel()), 0.0);
  const int64_t channels = x_shape[3], pixels = x_shape[1] * x_shape[2];
  const int64_t outputs_per_image = dy.numel() / x_shape[0];
  const float* pdy = dy.data<float>();
  for (int64_t i = 0; i < dy.numel(); ++i) {
    const int64_t n = i / outputs_per_image, c = i % channels;
    dx[size_t((n * pixels + argmax[size_t(i)]) * channels + c)] += pdy[i];
  }
  return dx;
}

inline std::vector<double> global_avg_pool_reference(const Tensor& x) {
  const int64_t n_count = x.size(0), pixels = x.size(1) * x.size(2), channels = x.size(3);
  std::vector<double> y(size_t(n_count * channels), 0.0);
  const float* px = x.data<float>();
  for (int64_t n = 0; n < n_count; ++n)
    for (int64_t p = 0; p < pixels; ++p)
      for (int64_t c = 0; c < channels; ++c) y[size_t(n * channels + c)] += px[(n * pixels + p) * channels + c];
  for (double& v : y) v /= double(pixels);
  return y;
}

// ---- linear: y [N, out] = x [N, in] W^T + b -------------------------------------------------------

struct LinearReference {
  Reference y, dx, dw;
  std::vector<double> db;
};

inline LinearReference linear_reference(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& dy) {
  const int64_t n_count = x.size(0), in = x.size(1), out = w.size(0);
  const float* px = x.data<float>();
  const float* pw = w.data<float>();
  const float* pdy = dy.data<float>();
  auto zeros = [](int64_t count) {
    return Reference{std::vector<double>(size_t(count)), std::vector<double>(size_t(count))};
  };
  LinearReference r{zeros(n_count * out), zeros(n_count * in), zeros(out * in), std::vector<double>(size_t(out))};
  for (int64_t n = 0; n < n_count; ++n)
    for (int64_t o = 0; o < out; ++o) {
      const size_t yi = size_t(n * out + o);
      if (b) {
        r.y.value[yi] += b->data<float>()[o];
        r.y.magnitude[yi] += std::abs(b->data<float>()[o]);
      }
      r.db[size_t(o)] += pdy[yi];
      for (int64_t i = 0; i < in; ++i) {
        const double y_term = double(px[n * in + i]) * pw[o * in + i];
        r.y.value[yi] += y_term;
        r.y.magnitude[yi] += std::abs(y_term);
        const double dx_term = double(pdy[yi]) * pw[o * in + i];
        r.dx.value[size_t(n * in + i)] += dx_term;
        r.dx.magnitude[size_t(n * in + i)] += std::abs(dx_term);
        const double dw_term = double(pdy[yi]) * px[n * in + i];
        r.dw.value[size_t(o * in + i)] += dw_term;
        r.dw.magnitude[size_t(o * in + i)] += std::abs(dw_term);
      }
    }
  return r;
}

// ---- GPU against CPU: the precisions and their norm-wise bounds ----------------------------------

// fp32 must agree to rounding (1e-5); TF32 rounds the inputs to 10 mantissa bits (5e-3); bf16 rounds
// activations and weight copies to 8 bits (2e-2).
struct PrecisionCase {
  Precision precision;
  DType dtype;  // of the activations
  double bound;
};
inline void PrintTo(const PrecisionCase& c, std::ostream* out) { *out << precision_name(c.precision); }
inline auto precision_cases() {
  return ::testing::Values(PrecisionCase{Precision::FP32, DType::F32, 1e-5},
                           PrecisionCase{Precision::TF32, DType::F32, 5e-3},
                           PrecisionCase{Precision::BF16, DType::BF16, 2e-2});
}
inline std::string precision_case_name(const ::testing::TestParamInfo<PrecisionCase>& info) {
  return precision_name(info.param.precision);
}

// ---- PyTorch's results (scripts/make_conv_fixture.py) ---------------------------------------------

inline const SafetensorsFile& layer_fixture() {
  static const SafetensorsFile file =
      load_safetensors(cuface::testing::fixture_path("conv_pool_linear.safetensors"));
  return file;
}

inline Tensor fixture_tensor(const std::string& name) {
  const auto it = layer_fixture().tensors.find(name);
  if (it == layer_fixture().tensors.end()) throw Error("tests/fixtures/conv_pool_linear.safetensors lacks " + name);
  return it->second;
}

}  // namespace cuface::testing
