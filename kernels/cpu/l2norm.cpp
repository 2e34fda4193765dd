// CPU row-wise L2 normalisation: one row per loop iteration, rows split over OpenMP threads; the
// inner loops are plain reductions and scalings the compiler vectorises. Sums are in double so this
// twin is the accurate reference for the CUDA kernels.
#include <algorithm>
#include <cmath>

#include "kernels/l2norm.h"

namespace cuface::cpu {

void l2norm_forward(Context&, const Tensor& x, Tensor& y, Tensor& norms) {
  const int64_t rows = x.size(0), dim = x.size(1);
  const float* px = x.data<float>();
  float* pn = norms.data<float>();
  const bool to_bf16_output = y.dtype() == DType::BF16;
  CUFACE_CHECK(to_bf16_output || y.dtype() == DType::F32, "l2norm_forward: y must be f32 or bf16");
#pragma omp parallel for schedule(static) if (rows * dim > 32768)
  for (int64_t i = 0; i < rows; ++i) {
    const float* row = px + i * dim;
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < dim; ++j) sum += double(row[j]) * row[j];
    const float norm = std::max(float(std::sqrt(sum)), kL2NormEps);
    pn[i] = norm;
    const float inverse = 1.0f / norm;
    if (to_bf16_output) {
      bf16* out = y.data<bf16>() + i * dim;
      for (int64_t j = 0; j < dim; ++j) out[j] = to_bf16(row[j] * inverse);
    } else {
      float* out = y.data<float>() + i * dim;
      for (int64_t j = 0; j < dim; ++j) out[j] = row[j] * inverse;
    }
  }
}

void l2norm_backward(Context&, const Tensor& x, const Tensor& norms, const Tensor& dy, Tensor& dx, bool accumulate) {
  const int64_t rows = x.size(0), dim = x.size(1);
  const float* px = x.data<float>();
  const float* pn = norms.data<float>();
  const float* pdy = dy.data<float>();
  float* pdx = dx.data<float>();
#pragma omp parallel for schedule(static) if (rows * dim > 32768)
  for (int64_t i = 0; i < rows; ++i) {
    const float* xr = px + i * dim;
    const float* dyr = pdy + i * dim;
    float* dxr = pdx + i * dim;
    const float inverse = 1.0f / pn[i];
    // <y, dy> with y = x / n.
    double dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int64_t j = 0; j < dim; ++j) dot += double(xr[j]) * dyr[j];
    const float y_dot_dy = float(dot) * inverse;
    // dx = (dy - y <y, dy>) / n
    if (accumulate) {
      for (int64_t j = 0; j < dim; ++j) dxr[j] += (dyr[j] - xr[j] * inverse * y_dot_dy) * inverse;
    } else {
      for (int64_t j = 0; j < dim; ++j) dxr[j] = (dyr[j] - xr[j] * inverse * y_dot_dy) * inverse;
    }
  }
}

}  // namespace cuface::cpu
