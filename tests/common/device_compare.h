// Helpers for tests that run a kernel on the GPU and compare with its CPU twin, in f32 or bf16.
#pragma once
#include <gtest/gtest.h>

#include <cmath>

#include "common/reference.h"
#include "engine/tensor.h"

namespace cuface::testing {

// A CPU f32 copy of an f32 or bf16 tensor on any device (synchronise its context first).
inline Tensor host_f32(const Tensor& t) {
  Tensor host = t.to(Device::CPU);
  if (host.dtype() == DType::F32) return host;
  Tensor out = Tensor::empty(t.shape());
  for (int64_t i = 0; i < t.numel(); ++i) out.data<float>()[i] = to_float(host.data<bf16>()[i]);
  return out;
}

// A copy of a CPU f32 tensor on the GPU in `dtype`. For bf16 the host tensor is rounded to bf16 in
// place first, so that the CPU reference sees exactly the values the GPU does.
inline Tensor upload(Tensor& host, DType dtype) {
  if (dtype == DType::F32) return host.to(Device::CUDA);
  Tensor half = Tensor::empty(host.shape(), DType::BF16);
  for (int64_t i = 0; i < host.numel(); ++i) {
    half.data<bf16>()[i] = to_bf16(host.data<float>()[i]);
    host.data<float>()[i] = to_float(half.data<bf16>()[i]);
  }
  return half.to(Device::CUDA);
}

// A GPU tensor full of NaN: an output element the kernel forgets to write shows up in the comparison.
inline Tensor poisoned(const Shape& shape, DType dtype) {
  Tensor t = Tensor::empty(shape, dtype, Device::CUDA);
  poison(t);
  return t;
}

// What a GPU loss kernel (which cannot throw without synchronising) leaves for each row of its
// in-place gradient [N, C] and row_stats [N, 3], both f32 (synchronise first): label -1, zeros; a label
// below -1 or >= classes, NaN everywhere; a valid label, finite numbers.
inline void expect_rows_by_label(const Tensor& grad, const Tensor& row_stats, const Tensor& labels, int64_t classes) {
  const Tensor g = grad.to(Device::CPU), r = row_stats.to(Device::CPU), y = labels.to(Device::CPU);
  const int64_t rows = g.size(0), columns = g.size(1);
  for (int64_t i = 0; i < rows; ++i) {
    const int32_t label = y.data<int32_t>()[i];
    const bool bad = label < -1 || label >= classes;
    auto check = [&](float v, const char* what) {
      if (label == -1)
        ASSERT_EQ(v, 0.0f) << what << " of ignored row " << i;
      else if (bad)
        ASSERT_TRUE(std::isnan(v)) << what << " of row " << i << " (label " << label << ") is " << v;
      else
        ASSERT_TRUE(std::isfinite(v)) << what << " of row " << i << " (label " << label << ") is " << v;
    };
    for (int64_t j = 0; j < columns; ++j) check(g.data<float>()[i * columns + j], "gradient");
    check(r.data<float>()[i * r.size(1)], "loss");
  }
}

}  // namespace cuface::testing
