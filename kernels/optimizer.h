// Fused optimizer updates: parameter, gradient and momentum are each read once and written at most
// once per step, instead of one pass per term.
//
// sgd_momentum_update: torch.optim.SGD with momentum, dampening 0, no Nesterov; per element
//   g = grad * grad_scale + weight_decay * param   (grad_scale undoes loss scaling or averages over
//                                                   workers; weight decay is the L2 term added to
//                                                   the gradient, so it is scaled by lr too)
//   v = momentum_coef * v + g                      (v must start at zero; PyTorch's first step, v = g,
//                                                   is then the same)
//   param -= lr * v
// All three tensors f32 with the same number of elements, on one device; param and momentum are
// updated in place.
#pragma once
#include "kernels/dispatch.h"

namespace cuface {

namespace cpu {
void sgd_momentum_update(Context& ctx, Tensor& param, const Tensor& grad, Tensor& momentum, float lr,
                         float momentum_coef, float weight_decay, float grad_scale);
}
namespace cuda {
void sgd_momentum_update(Context& ctx, Tensor& param, const Tensor& grad, Tensor& momentum, float lr,
                         float momentum_coef, float weight_decay, float grad_scale);
}

// Rejects an optimizer operand that does not match its parameter.
inline void check_optimizer_operand(const Tensor& param, const Tensor& operand, const char* what) {
  CUFACE_CHECK(param.dtype() == DType::F32 && operand.dtype() == DType::F32 && operand.numel() == param.numel() &&
                   operand.device() == param.device(),
               std::string(what) + ": parameter " + param.str() + " and " + operand.str() +
                   " differ in size, dtype or device (all must be f32)");
}

inline void sgd_momentum_update(Context& ctx, Tensor& param, const Tensor& grad, Tensor& momentum, float lr,
                                float momentum_coef, float weight_decay, float grad_scale = 1.0f) {
  check_optimizer_operand(param, grad, "sgd_momentum_update (gradient)");
  check_optimizer_operand(param, momentum, "sgd_momentum_update (momentum)");
  CUFACE_DISPATCH(param,
                  cpu::sgd_momentum_update(ctx, param, grad, momentum, lr, momentum_coef, weight_decay, grad_scale),
                  cuda::sgd_momentum_update(ctx, param, grad, momentum, lr, momentum_coef, weight_decay, grad_scale));
}

}  // namespace cuface
