#include "layers/max_pool2d.h"

namespace cuface {

MaxPool2d::MaxPool2d(int64_t kernel, int64_t stride, int64_t padding) : geometry_{kernel, stride, padding} {}

Tensor MaxPool2d::forward(Context& ctx, const Tensor& x) {
  const Shape y_shape = max_pool2d_output_shape(x.shape(), geometry_);
  Tensor y = Tensor::empty(y_shape, x.dtype(), x.device());
  Tensor argmax = Tensor::empty(y_shape, DType::I32, x.device());
  max_pool2d_forward(ctx, x, y, argmax, geometry_);
  x_shape_ = x.shape();
  argmax_ = training_ ? argmax : Tensor();
  return y;
}

Tensor MaxPool2d::backward(Context& ctx, const Tensor& dy) {
  CUFACE_CHECK(argmax_.defined(), "MaxPool2d: backward needs a training-mode forward first");
  Tensor dx = Tensor::empty(x_shape_, dy.dtype(), dy.device());
  max_pool2d_backward(ctx, dy, argmax_, dx, geometry_);
  argmax_ = Tensor();
  return dx;
}

}  // namespace cuface
