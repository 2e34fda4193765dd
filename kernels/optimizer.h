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

namespace cpu {
void sgd_momentum_update(Context& ctx, const std::vector<SgdTensor>& tensors, float lr, float momentum_coef,
                         float grad_scale, bool zero_grad);
}
namespace cuda {
void sgd_momentum_update(Context& ctx, const std::vector<SgdTensor>& tensors, float lr, float momentum_coef,
                         float grad_scale, bool zero_grad);
}

// Rejects a list whose entries do not match (message names the entry and the operand).
void check_sgd_tensors(const std::vector<SgdTensor>& tensors);

inline void sgd_momentum_update(Context& ctx, const std::vector<SgdTensor>& tensors, float lr, float momentum_coef,
                                float grad_scale = 1.0f, bool zero_grad = false) {
  if (tensors.empty()) return;
  check_sgd_tensors(tensors);
  CUFACE_DISPATCH(tensors.front().param,
                  cpu::sgd_momentum_update(ctx, tensors, lr, momentum_coef, grad_scale, zero_grad),
                  cuda::sgd_momentum_update(ctx, tensors, lr, momentum_coef, grad_scale, zero_grad));
}

}  // namespace cuface
