#include "layers/relu.h"

#include "kernels/activation.h"

namespace cuface {

Tensor ReLU::forward(Context& ctx, const Tensor& x) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  relu_forward(ctx, x, y);
  y_ = y;
  return y;
}

Tensor ReLU::backward(Context& ctx, const Tensor& dy) {
  CUFACE_CHECK(y_.defined(), "ReLU: backward called before forward");
  Tensor dx = Tensor::empty(y_.shape(), y_.dtype(), y_.device());
  relu_backward(ctx, y_, dy, dx);
  return dx;
}

}  // namespace cuface
