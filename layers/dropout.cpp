#include "layers/dropout.h"

#include "kernels/dropout.h"

namespace cuface {

Dropout::Dropout(float p, uint64_t seed) : p_(p), seed_(seed) {
  CUFACE_CHECK(p >= 0.0f && p < 1.0f, "Dropout: probability " + std::to_string(p) + " is outside [0, 1)");
}

Tensor Dropout::forward(Context& ctx, const Tensor& x) {
  dropped_ = training_ && p_ > 0.0f;
  if (!dropped_) return x;
  mask_step_ = step_++;
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  dropout(ctx, x, y, p_, seed_, {mask_step_, counter_});
  return y;
}

Tensor Dropout::backward(Context& ctx, const Tensor& dy) {
  if (!dropped_) return dy;
  Tensor dx = Tensor::empty(dy.shape(), dy.dtype(), dy.device());
  dropout(ctx, dy, dx, p_, seed_, {mask_step_, counter_});
  return dx;
}

}  // namespace cuface
