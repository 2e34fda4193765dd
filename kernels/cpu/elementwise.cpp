// CPU element-wise kernels: plain loops, split over OpenMP threads and left to the auto-vectoriser.
#include <cstring>

#include "kernels/elementwise.h"

namespace cuface::cpu {

void fill(Context&, Tensor& y, float value) {
  CUFACE_CHECK(y.dtype() == DType::F32 || value == 0.0f, "fill: non-zero fill needs an f32 tensor");
  if (y.dtype() != DType::F32) {
    std::memset(y.raw(), 0, y.bytes());
    return;
  }
  float* p = y.data<float>();
  const int64_t n = y.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) p[i] = value;
}

void copy(Context&, const Tensor& x, Tensor& y) {
  if (x.raw() != y.raw()) std::memcpy(y.raw(), x.raw(), y.bytes());
}

void axpy(Context&, float alpha, const Tensor& x, Tensor& y) {
  const float* a = x.data<float>();
  float* b = y.data<float>();
  const int64_t n = y.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) b[i] += alpha * a[i];
}

void scale(Context&, float alpha, Tensor& y) {
  float* p = y.data<float>();
  const int64_t n = y.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) p[i] *= alpha;
}

void add(Context&, const Tensor& a, const Tensor& b, Tensor& y) {
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* py = y.data<float>();
  const int64_t n = y.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) py[i] = pa[i] + pb[i];
}

// Element i of a float-like tensor, as float.
static float load(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::F32: return t.data<float>()[i];
    case DType::BF16: return to_float(t.data<bf16>()[i]);
    case DType::F16: return to_float(t.data<f16>()[i]);
    default: throw Error("cast: unsupported source dtype " + std::string(dtype_name(t.dtype())));
  }
}

void cast(Context&, const Tensor& x, Tensor& y) {
  const int64_t n = y.numel();
  switch (y.dtype()) {
    case DType::F32:
      for (int64_t i = 0; i < n; ++i) y.data<float>()[i] = load(x, i);
      break;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) y.data<bf16>()[i] = to_bf16(load(x, i));
      break;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) y.data<f16>()[i] = to_f16(load(x, i));
      break;
    default: throw Error("cast: unsupported target dtype " + std::string(dtype_name(y.dtype())));
  }
}

}  // namespace cuface::cpu
