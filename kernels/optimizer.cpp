#include "kernels/optimizer.h"

namespace cuface {

void check_sgd_tensors(const std::vector<SgdTensor>& tensors) {
  const Device device = tensors.front().param.device();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const SgdTensor& t = tensors[i];
    const std::string what = "sgd_momentum_update, entry " + std::to_string(i) + ": ";
    CUFACE_CHECK(t.param.defined() && t.param.dtype() == DType::F32 && t.param.device() == device,
                 what + "parameter " + t.param.str() + " must be f32 on " + device_name(device));
    for (const Tensor* operand : {&t.grad, &t.momentum})
      CUFACE_CHECK(operand->defined() && operand->dtype() == DType::F32 && operand->numel() == t.param.numel() &&
                       operand->device() == device,
                   what + "parameter " + t.param.str() + " and " + operand->str() +
                       " differ in size, dtype or device (all must be f32)");
  }
}

}  // namespace cuface
