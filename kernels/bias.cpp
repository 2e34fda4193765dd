#include "kernels/bias.h"

namespace cuface {

void check_bias(const Tensor& activations, const Tensor& bias, const char* what) {
  CUFACE_CHECK(activations.defined() && bias.defined(), std::string(what) + ": an operand is an undefined tensor");
  // Built only when a check fails.
  const auto operands = [&] { return std::string(" (") + activations.str() + ", bias " + bias.str() + ")"; };
  CUFACE_CHECK(activations.rank() >= 1 && bias.rank() == 1 && bias.size(0) == activations.size(-1),
               std::string(what) + ": the bias must be a vector as long as the last axis" + operands());
  CUFACE_CHECK(activations.device() == bias.device(),
               std::string(what) + ": operands on different devices" + operands());
  CUFACE_CHECK(bias.dtype() == DType::F32,
               std::string(what) + ": the bias (and its gradient) must be f32" + operands());
  const bool bf16_allowed = activations.is_cuda();
  CUFACE_CHECK(activations.dtype() == DType::F32 || (bf16_allowed && activations.dtype() == DType::BF16),
               std::string(what) +
                   (bf16_allowed ? ": activations must be f32 or bf16" : ": CPU activations must be f32") + operands());
}

}  // namespace cuface
