#include "layers/prelu.h"

#include "kernels/activation.h"

namespace cuface {

PReLU::PReLU(int64_t channels, float initial_slope, bool decay) : channels_(channels) {
  CUFACE_CHECK(channels > 0, "PReLU: channels must be positive, got " + std::to_string(channels));
  Tensor slope = Tensor::empty({channels});
  for (int64_t c = 0; c < channels; ++c) slope.data<float>()[c] = initial_slope;
  weight_ = {"weight", slope, Tensor(), true, decay};
  register_parameter(weight_);
}

Tensor PReLU::forward(Context& ctx, const Tensor& x) {
  CUFACE_CHECK(x.rank() >= 2 && x.size(-1) == channels_, "PReLU(" + std::to_string(channels_) +
                                                             "): expected [N, C] or [N, H, W, C] input with C = " +
                                                             std::to_string(channels_) + ", got " + x.str());
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  prelu_forward(ctx, x, weight_.value, y);
  x_ = x;
  return y;
}

Tensor PReLU::backward(Context& ctx, const Tensor& dy) {
  CUFACE_CHECK(x_.defined(), "PReLU: backward called before forward");
  Tensor dx = Tensor::empty(x_.shape(), x_.dtype(), x_.device());
  Tensor no_gradient;
  prelu_backward(ctx, x_, weight_.value, dy, dx, frozen_ ? no_gradient : weight_.grad);
  return dx;
}

}  // namespace cuface
