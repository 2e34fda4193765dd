// ResidualAdd: the join of a residual block, y = relu(a + b) (ResNet V1's Bottleneck ends with
// relu(main + shortcut)) or y = a + b (relu off, as in IResNet). It has two inputs, so it is a
// helper for blocks rather than a Layer:
//
//   Tensor y = join.forward(ctx, main_out, shortcut_out);
//   ...
//   Tensor d = join.backward(ctx, dy);        // dL/d(main_out) = dL/d(shortcut_out) = d
//   Tensor dx = main.backward(ctx, d);        // both branches get the same gradient, and where
//   add(ctx, dx, shortcut.backward(ctx, d), dx);  // they meet at the block input their dx add up
//
// With relu the sum and the ReLU run as one kernel (kernels/activation.h add_relu), and backward masks
// dy with y > 0 from the saved output; without relu the sum is kernels/elementwise.h add and backward
// returns dy itself. f32, or bf16 on CUDA.
#pragma once
#include "engine/context.h"
#include "engine/tensor.h"

namespace cuface {

class ResidualAdd {
 public:
  explicit ResidualAdd(bool relu = true) : relu_(relu) {}
  Tensor forward(Context& ctx, const Tensor& a, const Tensor& b);
  Tensor backward(Context& ctx, const Tensor& dy);

 private:
  bool relu_;
  Tensor y_;  // saved output, for the ReLU mask
};

}  // namespace cuface
