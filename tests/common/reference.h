// Shared test utilities: seeded random tensors, float64 views and error norms.
#pragma once
#include <cmath>
#include <random>
#include <vector>

#include "engine/tensor.h"

namespace cuface::testing {

// A CPU f32 tensor of uniform values in [lo, hi), reproducible from the seed.
inline Tensor random_tensor(const Shape& shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Tensor t = Tensor::empty(shape, DType::F32, Device::CPU);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = dist(rng);
  return t;
}

// An i32 [1] CPU tensor holding `value`: a step counter (kernels/random_step.h) for copying into the
// device counter a captured step reads.
inline Tensor step_counter(int32_t value) {
  Tensor t = Tensor::empty({1}, DType::I32, Device::CPU);
  t.data<int32_t>()[0] = value;
  return t;
}

// Copies any f32 tensor (CPU or CUDA) into doubles.
inline std::vector<double> to_doubles(const Tensor& t) {
  Tensor host = t.device() == Device::CPU ? t : t.to(Device::CPU);
  std::vector<double> out(size_t(host.numel()));
  const float* p = host.data<float>();
  for (size_t i = 0; i < out.size(); ++i) out[i] = p[i];
  return out;
}

// ||a - b|| / max(||b||, tiny): the norm-wise relative error used throughout the tests.
inline double relative_error(const std::vector<double>& a, const std::vector<double>& b) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    diff += (a[i] - b[i]) * (a[i] - b[i]);
    norm += b[i] * b[i];
  }
  if (a.size() != b.size()) return INFINITY;
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
}

inline double relative_error(const Tensor& a, const Tensor& b) { return relative_error(to_doubles(a), to_doubles(b)); }

// Fills an f32 or bf16 tensor with NaN so a test can prove that a kernel writes every output element.
inline void poison(Tensor& t) {
  Tensor host = Tensor::empty(t.shape(), t.dtype(), Device::CPU);
  for (int64_t i = 0; i < host.numel(); ++i) {
    if (t.dtype() == DType::BF16)
      host.data<bf16>()[i] = to_bf16(NAN);
    else
      host.data<float>()[i] = NAN;
  }
  t.copy_from(host);
}

}  // namespace cuface::testing
