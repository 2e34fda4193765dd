#include "kernels/optimizer.h"

namespace cuface {

namespace {
void check_scalar(const Tensor& t, Device device, const std::string& what) {
  CUFACE_CHECK(t.dtype() == DType::F32 && t.numel() == 1 && t.device() == device,
               what + " must be f32 [1] on " + device_name(device) + ", got " + t.str());
}
}  // namespace

void check_sgd_tensors(const std::vector<SgdTensor>& tensors, const SgdDeviceInputs& inputs) {
  const Device device = tensors.front().param.device();
  if (inputs.lr.defined()) check_scalar(inputs.lr, device, "sgd_momentum_update: the device learning rate");
  if (inputs.skip.defined()) check_scalar(inputs.skip, device, "sgd_momentum_update: the skip flag");
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

void check_flag_nonfinite(const Tensor& x, const Tensor& flag) {
  CUFACE_CHECK(x.defined() && x.dtype() == DType::F32, "flag_nonfinite: expected f32 values, got " + x.str());
  check_scalar(flag, x.device(), "flag_nonfinite: the flag");
}

}  // namespace cuface
