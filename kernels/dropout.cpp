#include "kernels/dropout.h"

namespace cuface {

void check_dropout(const Tensor& x, const Tensor& y, float p) {
  CUFACE_CHECK(p >= 0.0f && p < 1.0f, "dropout: probability " + std::to_string(p) + " is outside [0, 1)");
  CUFACE_CHECK(
      x.defined() && y.defined() && x.numel() == y.numel() && x.dtype() == y.dtype() && x.device() == y.device(),
      "dropout: " + x.str() + " and " + y.str() + " differ in size, dtype or device");
  CUFACE_CHECK(x.dtype() == DType::F32 || (x.dtype() == DType::BF16 && x.is_cuda()),
               "dropout: expected f32 (or bf16 on CUDA), got " + x.str());
}

}  // namespace cuface
