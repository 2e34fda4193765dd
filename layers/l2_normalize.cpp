#include "layers/l2_normalize.h"

#include "kernels/l2norm.h"

namespace cuface {

Tensor L2Normalize::forward(Context& ctx, const Tensor& x) {
  CUFACE_CHECK(x.defined() && x.rank() == 2, "L2Normalize: expected x [N, D], got " + (x.defined() ? x.str() : "undefined"));
  Tensor y = Tensor::empty(x.shape(), DType::F32, x.device());
  Tensor norms = Tensor::empty({x.size(0)}, DType::F32, x.device());
  l2norm_forward(ctx, x, y, norms);
  if (training_) x_ = x, norms_ = norms;
  return y;
}

Tensor L2Normalize::backward(Context& ctx, const Tensor& dy) {
  CUFACE_CHECK(x_.defined(), "L2Normalize: backward without a training forward");
  Tensor dx = Tensor::empty(x_.shape(), DType::F32, x_.device());
  l2norm_backward(ctx, x_, norms_, dy, dx, false);
  return dx;
}

}  // namespace cuface
