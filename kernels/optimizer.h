// Fused optimizer updates: parameter, gradient and momentum are each read once and written at most
// once per step, instead of one pass per term, and a whole list of tensors is updated by one call.
//
// sgd_momentum_update: torch.optim.SGD with momentum, dampening 0, no Nesterov; per element of each
// listed tensor
//   g = grad * grad_scale + weight_decay * param   (grad_scale undoes loss scaling or averages over
//                                                   workers; weight decay is the L2 term added to
//                                                   the gradient, so it is scaled by lr too)
//   v = momentum_coef * v + g                      (v must start at zero; PyTorch's first step, v = g,
//                                                   is then the same)
//   param -= lr * v
//   grad = 0                                       (when `zero_grad`: the step consumes the gradient,
//                                                   so the next step's backward can accumulate afresh
//                                                   without a pass of its own to clear it)
// Each entry has its own weight decay. All tensors f32, an entry's three with the same number of
// elements, all on one device; param, momentum (and grad) are updated in place.
//
// Why a list: ResNet-50 has ~160 parameter tensors, most of them small (BatchNorm's [C]), so one
// launch per tensor for the update and another for zeroing its gradient costs more than the
// arithmetic. On CUDA the list is cut into groups (kernels/cuda/optimizer.cu) whose pointers travel as the
// kernel's arguments (no device-side table to build or keep in step); on the CPU it is one OpenMP
// region.
//
// A step replayed from a CUDA graph (face/train/step_graph.h) cannot pass its learning rate by value:
// SgdDeviceInputs names f32 [1] tensors on the tensors' device that the update reads when it runs,
//   lr    the learning rate, in place of `lr`;
//   skip  non-zero: parameters and momentum stay as they were (the gradient is still zeroed when
//         `zero_grad`), as PyTorch's GradScaler skips the step whose found_inf is set and the loop's
//         zero_grad clears its gradient all the same; flag_nonfinite sets it from the step's losses.
// Undefined tensors are not read (the eager steps pass their LR by value and check the loss on the host).
//
// flag_nonfinite: flag = 1 when some element of x is NaN or infinite, else flag is left as it is (x and
// flag f32, flag [1], one device). Zeroed, then called on each loss of a step, it is the step's found_inf.
#pragma once
#include <vector>

#include "kernels/dispatch.h"

namespace cuface {

struct SgdTensor {
  Tensor param;     // updated in place
  Tensor grad;      // read (and zeroed)
  Tensor momentum;  // updated in place
  float weight_decay = 0.0f;
};

struct SgdDeviceInputs {
  Tensor lr, skip;
};

namespace cpu {
void sgd_momentum_update(Context& ctx, const std::vector<SgdTensor>& tensors, float lr, float momentum_coef,
                         float grad_scale, bool zero_grad, const SgdDeviceInputs& device);
void flag_nonfinite(Context& ctx, const Tensor& x, Tensor& flag);
}  // namespace cpu
namespace cuda {
void sgd_momentum_update(Context& ctx, const std::vector<SgdTensor>& tensors, float lr, float momentum_coef,
                         float grad_scale, bool zero_grad, const SgdDeviceInputs& device);
void flag_nonfinite(Context& ctx, const Tensor& x, Tensor& flag);
}  // namespace cuda

// Reject a list whose entries do not match (message names the entry and the operand), device inputs
// that are not f32 [1] on the list's device, and a flag_nonfinite flag that is not f32 [1] beside x.
void check_sgd_tensors(const std::vector<SgdTensor>& tensors, const SgdDeviceInputs& device);
void check_flag_nonfinite(const Tensor& x, const Tensor& flag);

inline void sgd_momentum_update(Context& ctx, const std::vector<SgdTensor>& tensors, float lr, float momentum_coef,
                                float grad_scale = 1.0f, bool zero_grad = false, const SgdDeviceInputs& device = {}) {
  if (tensors.empty()) return;
  check_sgd_tensors(tensors, device);
  CUFACE_DISPATCH(tensors.front().param,
                  cpu::sgd_momentum_update(ctx, tensors, lr, momentum_coef, grad_scale, zero_grad, device),
                  cuda::sgd_momentum_update(ctx, tensors, lr, momentum_coef, grad_scale, zero_grad, device));
}

inline void flag_nonfinite(Context& ctx, const Tensor& x, Tensor& flag) {
  check_flag_nonfinite(x, flag);
  CUFACE_DISPATCH(x, cpu::flag_nonfinite(ctx, x, flag), cuda::flag_nonfinite(ctx, x, flag));
}

}  // namespace cuface
