// CPU twin of kernels/cuda/image.cu.
#include "kernels/image.h"

namespace cuface::cpu {

void normalise_u8(Context&, const Tensor& x, Tensor& y, float mean, float scale) {
  const uint8_t* in = x.data<uint8_t>();
  const int64_t n = x.numel();
  if (y.dtype() == DType::F32) {
    float* out = y.data<float>();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) out[i] = (float(in[i]) - mean) * scale;
  } else {
    bf16* out = y.data<bf16>();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) out[i] = to_bf16((float(in[i]) - mean) * scale);
  }
}

}  // namespace cuface::cpu
