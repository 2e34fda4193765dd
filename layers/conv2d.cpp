#include "layers/conv2d.h"

#include <cmath>

#include "kernels/bias.h"
#include "kernels/elementwise.h"
#include "kernels/random.h"

namespace cuface {

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride, int64_t padding, bool bias,
               uint64_t seed)
    : in_channels_(in_channels),
      out_channels_(out_channels),
      kernel_(kernel),
      geometry_(stride, padding),
      has_bias_(bias) {
  CUFACE_CHECK(in_channels > 0 && out_channels > 0 && kernel > 0 && stride > 0 && padding >= 0,
               "Conv2d: needs positive channels, kernel and stride and a non-negative padding");
  Context cpu(Device::CPU);
  weight_.name = "weight";
  weight_.ohwi = true;
  weight_.value = Tensor::empty({out_channels, kernel, kernel, in_channels});
  fill_normal(cpu, weight_.value, seed, 0, 0.0f, std::sqrt(2.0f / float(out_channels * kernel * kernel)));
  register_parameter(weight_);
  if (has_bias_) {
    const float bound = 1.0f / std::sqrt(float(in_channels * kernel * kernel));
    bias_.name = "bias";
    bias_.decay = false;
    bias_.value = Tensor::empty({out_channels});
    fill_uniform(cpu, bias_.value, seed, 1, -bound, bound);
    register_parameter(bias_);
  }
}

const Tensor& Conv2d::weight_for(Context& ctx, DType dtype) {
  if (dtype == DType::F32) return weight_.value;
  if (!weight_bf16_.defined() || weight_bf16_.device() != weight_.value.device())
    weight_bf16_ = Tensor::empty(weight_.value.shape(), DType::BF16, weight_.value.device());
  cast(ctx, weight_.value, weight_bf16_);
  return weight_bf16_;
}

ProfileWork Conv2d::work(Pass pass, const Tensor& in, const Tensor& out) const {
  const Tensor& y = pass == Pass::Forward ? out : in;  // backward: in is dy
  const double gemm = 2.0 * double(y.numel()) * double(kernel_ * kernel_ * in_channels_);
  return {pass == Pass::Backward && !frozen_ ? 2 * gemm : gemm, tensor_bytes(in, out)};
}

Tensor Conv2d::forward(Context& ctx, const Tensor& x) {
  CUFACE_CHECK(x.rank() == 4 && x.size(3) == in_channels_,
               "Conv2d: expects x [N, H, W, " + std::to_string(in_channels_) + "], got " + x.str());
  const Tensor& w = weight_for(ctx, x.dtype());
  Tensor y = Tensor::empty(conv2d_output_shape(x.shape(), w.shape(), geometry_), x.dtype(), x.device());
  conv2d_forward(ctx, x, w, y, geometry_);
  if (has_bias_) add_bias(ctx, y, bias_.value);
  ready_for_backward_ = training_;
  x_shape_ = x.shape();
  x_ = training_ && !frozen_ ? x : Tensor();
  return y;
}

Tensor Conv2d::backward(Context& ctx, const Tensor& dy) {
  CUFACE_CHECK(ready_for_backward_, "Conv2d: backward needs a training-mode forward first");
  CUFACE_CHECK(frozen_ || x_.defined(),
               "Conv2d: unfrozen after forward, so the input needed for the weight gradient "
               "was not saved");
  if (!frozen_) {
    conv2d_backward_filter(ctx, x_, dy, weight_.grad, geometry_);
    if (has_bias_) accumulate_bias_grad(ctx, dy, bias_.grad);
  }
  Tensor dx;
  if (input_gradient_) {
    const Tensor& w = dy.dtype() == DType::F32 ? weight_.value : weight_bf16_;  // the forward's copy
    dx = Tensor::empty(x_shape_, dy.dtype(), dy.device());
    conv2d_backward_data(ctx, dy, w, dx, geometry_);
  }
  x_ = Tensor();
  ready_for_backward_ = false;
  return dx;
}

Tensor Conv2d::weight_oihw() const { return ohwi_to_oihw(weight_.value); }

void Conv2d::set_weight_oihw(const Tensor& oihw) {
  check_shape(oihw, Shape{out_channels_, in_channels_, kernel_, kernel_}, "Conv2d::set_weight_oihw");
  weight_.value.copy_from(oihw_to_ohwi(oihw));
}

}  // namespace cuface
