// Helpers for tests that run a kernel on the GPU and compare with its CPU twin, in f32 or bf16.
#pragma once
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

}  // namespace cuface::testing
