#include "layers/residual.h"

#include "kernels/activation.h"
#include "kernels/elementwise.h"

namespace cuface {

Tensor ResidualAdd::forward(Context& ctx, const Tensor& a, const Tensor& b) {
  CUFACE_CHECK(a.shape() == b.shape(), "ResidualAdd: branches differ in shape: " + a.str() + " and " + b.str());
  Tensor y = Tensor::empty(a.shape(), a.dtype(), a.device());
  if (relu_)
    add_relu(ctx, a, b, y);
  else
    add(ctx, a, b, y);
  y_ = relu_ ? y : Tensor();
  return y;
}

Tensor ResidualAdd::backward(Context& ctx, const Tensor& dy) {
  if (!relu_) return dy;
  CUFACE_CHECK(y_.defined(), "ResidualAdd: backward called before forward");
  Tensor d = Tensor::empty(y_.shape(), y_.dtype(), y_.device());
  relu_backward(ctx, y_, dy, d);
  return d;
}

}  // namespace cuface
