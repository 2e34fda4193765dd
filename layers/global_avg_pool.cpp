#include "layers/global_avg_pool.h"

#include "kernels/pool.h"

namespace cuface {

Tensor GlobalAvgPool::forward(Context& ctx, const Tensor& x) {
  CUFACE_CHECK(x.rank() == 4, "GlobalAvgPool: expects x [N, H, W, C], got " + x.str());
  Tensor y = Tensor::empty({x.size(0), x.size(3)}, x.dtype(), x.device());
  global_avg_pool_forward(ctx, x, y);
  x_shape_ = x.shape();
  ready_for_backward_ = training_;
  return y;
}

Tensor GlobalAvgPool::backward(Context& ctx, const Tensor& dy) {
  CUFACE_CHECK(ready_for_backward_, "GlobalAvgPool: backward needs a training-mode forward first");
  Tensor dx = Tensor::empty(x_shape_, dy.dtype(), dy.device());
  global_avg_pool_backward(ctx, dy, dx);
  ready_for_backward_ = false;
  return dx;
}

}  // namespace cuface
