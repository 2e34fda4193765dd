// Activations over whole tensors; f32, or bf16 on CUDA (all activation tensors of a call share one
// dtype; PReLU's slope and its gradient are f32 [C]).
//
//   relu_forward:   y = max(x, 0)                                  (y may alias x)
//   relu_backward:  dx = dy * (y > 0)
//     from the OUTPUT y, not x: the layer after a ReLU keeps y for its own backward anyway, so the
//     ReLU saves nothing new, and an in-place forward (x overwritten by y) stays differentiable.
//   add_relu:       y = max(a + b, 0)                              (y may alias a or b)
//     the residual join of a ResNet block, fused; its backward is relu_backward on its y, and the
//     result flows unchanged to both a and b (see layers/residual.h).
//   prelu_forward:  y = x > 0 ? x : slope[c] * x                   (c = channel = last axis)
//   prelu_backward: dx = dy * (x > 0 ? 1 : slope[c]),  dslope[c] += sum over rows of dy * min(x, 0)
//     dslope accumulates (+=, like parameter gradients in layers/layer.h); undefined skips it.
// At x == 0 both ReLU and PReLU take the "not positive" branch, as PyTorch does.
#pragma once
#include "kernels/dispatch.h"

namespace cuface {

namespace cpu {
void relu_forward(Context& ctx, const Tensor& x, Tensor& y);
void relu_backward(Context& ctx, const Tensor& y, const Tensor& dy, Tensor& dx);
void add_relu(Context& ctx, const Tensor& a, const Tensor& b, Tensor& y);
void prelu_forward(Context& ctx, const Tensor& x, const Tensor& slope, Tensor& y);
void prelu_backward(Context& ctx, const Tensor& x, const Tensor& slope, const Tensor& dy, Tensor& dx, Tensor& dslope);
}  // namespace cpu

namespace cuda {
void relu_forward(Context& ctx, const Tensor& x, Tensor& y);
void relu_backward(Context& ctx, const Tensor& y, const Tensor& dy, Tensor& dx);
void add_relu(Context& ctx, const Tensor& a, const Tensor& b, Tensor& y);
void prelu_forward(Context& ctx, const Tensor& x, const Tensor& slope, Tensor& y);
void prelu_backward(Context& ctx, const Tensor& x, const Tensor& slope, const Tensor& dy, Tensor& dx, Tensor& dslope);
}  // namespace cuda

// Same shape, dtype and device; f32, or bf16 on CUDA.
void check_activation(const Tensor& x, const Tensor& y, const char* what);
// PReLU: x is [..., C] (rank >= 2) and `slope` (and dslope, when defined) f32 [C] on x's device.
void check_prelu_slope(const Tensor& x, const Tensor& slope, const char* what);

inline void relu_forward(Context& ctx, const Tensor& x, Tensor& y) {
  check_activation(x, y, "relu_forward");
  CUFACE_DISPATCH(y, cpu::relu_forward(ctx, x, y), cuda::relu_forward(ctx, x, y));
}
inline void relu_backward(Context& ctx, const Tensor& y, const Tensor& dy, Tensor& dx) {
  check_activation(y, dy, "relu_backward");
  check_activation(y, dx, "relu_backward");
  CUFACE_DISPATCH(dx, cpu::relu_backward(ctx, y, dy, dx), cuda::relu_backward(ctx, y, dy, dx));
}
inline void add_relu(Context& ctx, const Tensor& a, const Tensor& b, Tensor& y) {
  check_activation(a, y, "add_relu");
  check_activation(b, y, "add_relu");
  CUFACE_DISPATCH(y, cpu::add_relu(ctx, a, b, y), cuda::add_relu(ctx, a, b, y));
}
inline void prelu_forward(Context& ctx, const Tensor& x, const Tensor& slope, Tensor& y) {
  check_activation(x, y, "prelu_forward");
  check_prelu_slope(x, slope, "prelu_forward");
  CUFACE_DISPATCH(y, cpu::prelu_forward(ctx, x, slope, y), cuda::prelu_forward(ctx, x, slope, y));
}
inline void prelu_backward(Context& ctx, const Tensor& x, const Tensor& slope, const Tensor& dy, Tensor& dx,
                           Tensor& dslope) {
  check_activation(x, dy, "prelu_backward");
  check_activation(x, dx, "prelu_backward");
  check_prelu_slope(x, slope, "prelu_backward");
  if (dslope.defined()) check_prelu_slope(x, dslope, "prelu_backward (dslope)");
  CUFACE_DISPATCH(dx, cpu::prelu_backward(ctx, x, slope, dy, dx, dslope),
                  cuda::prelu_backward(ctx, x, slope, dy, dx, dslope));
}

}  // namespace cuface
