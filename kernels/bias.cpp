#include "kernels/bias.h"

namespace cuface {

void check_bias(const Tensor& activations, const Tensor& bias, const char* what) {
  const std::string name(what);
  CUFACE_CHECK(activations.defined() && bias.defined(), name + ": an operand is an undefined tensor");
  const std::string operands = " (" + activations.str() + ", bias " + bias.str() + ")";
  CUFACE_CHECK(activations.rank() >= 1 && bias.rank() == 1 && bias.size(0) == activations.size(-1),
               name + ": the bias must be a vector as long as the last axis" + operands);
  CUFACE_CHECK(activations.device() == bias.device(), name + ": operands on different devices" + operands);
  CUFACE_CHECK(bias.dtype() == DType::F32, name + ": the bias (and its gradient) must be f32" + operands);
  const bool bf16_allowed = activations.is_cuda();
  CUFACE_CHECK(activations.dtype() == DType::F32 || (bf16_allowed && activations.dtype() == DType::BF16),
               name + (bf16_allowed ? ": activations must be f32 or bf16" : ": CPU activations must be f32") + operands);
}

}  // namespace cuface
