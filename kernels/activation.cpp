#include "kernels/activation.h"

namespace cuface {

void check_activation(const Tensor& x, const Tensor& y, const char* what) {
  CUFACE_CHECK(x.defined() && y.defined(), std::string(what) + ": tensors must be defined");
  CUFACE_CHECK(x.shape() == y.shape() && x.dtype() == y.dtype() && x.device() == y.device(),
               std::string(what) + ": " + x.str() + " and " + y.str() + " differ in shape, dtype or device");
  CUFACE_CHECK(x.dtype() == DType::F32 || (x.dtype() == DType::BF16 && x.is_cuda()),
               std::string(what) + ": expected f32 (or bf16 on CUDA), got " + x.str());
}

void check_prelu_slope(const Tensor& x, const Tensor& slope, const char* what) {
  CUFACE_CHECK(x.rank() >= 2 && x.size(-1) > 0,
               std::string(what) + ": expected [N, C] or [N, H, W, C], got " + x.str());
  CUFACE_CHECK(
      slope.defined() && slope.dtype() == DType::F32 && slope.numel() == x.size(-1) && slope.device() == x.device(),
      std::string(what) + ": slope must be f32 with " + std::to_string(x.size(-1)) + " elements (one per channel) on " +
          device_name(x.device()) + ", got " + slope.str());
}

}  // namespace cuface
