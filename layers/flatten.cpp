#include "layers/flatten.h"

namespace cuface {

Tensor Flatten::forward(Context&, const Tensor& x) {
  CUFACE_CHECK(x.rank() >= 1, "Flatten: expects a tensor with a batch axis, got " + x.str());
  x_shape_ = x.shape();
  return x.reshape({x.size(0), x.size(0) ? x.numel() / x.size(0) : 0});
}

Tensor Flatten::backward(Context&, const Tensor& dy) {
  CUFACE_CHECK(x_shape_.rank > 0 && dy.numel() == x_shape_.numel(),
               "Flatten: dy " + dy.str() + " does not match the forward input " + x_shape_.str());
  return dy.reshape(x_shape_);
}

}  // namespace cuface
