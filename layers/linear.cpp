#include "layers/linear.h"

#include <cmath>

#include "kernels/bias.h"
#include "kernels/gemm.h"
#include "kernels/random.h"

namespace cuface {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, uint64_t seed)
    : in_features_(in_features), out_features_(out_features), has_bias_(bias) {
  CUFACE_CHECK(in_features > 0 && out_features > 0, "Linear: needs positive feature counts");
  Context cpu(Device::CPU);
  const float bound = 1.0f / std::sqrt(float(in_features));
  weight_.name = "weight";
  weight_.value = Tensor::empty({out_features, in_features});
  fill_uniform(cpu, weight_.value, seed, 0, -bound, bound);
  register_parameter(weight_);
  if (has_bias_) {
    bias_.name = "bias";
    bias_.decay = false;
    bias_.value = Tensor::empty({out_features});
    fill_uniform(cpu, bias_.value, seed, 1, -bound, bound);
    register_parameter(bias_);
  }
}

ProfileWork Linear::work(Pass pass, const Tensor& in, const Tensor& out) const {
  const Tensor& y = pass == Pass::Forward ? out : in;  // backward: in is dy
  const double gemm = 2.0 * double(y.numel()) * double(in_features_);
  return {pass == Pass::Backward && !frozen_ ? 2 * gemm : gemm, tensor_bytes(in, out)};
}

Tensor Linear::forward(Context& ctx, const Tensor& x) {
  CUFACE_CHECK(x.rank() == 2 && x.size(1) == in_features_,
               "Linear: expects x [N, " + std::to_string(in_features_) + "], got " + x.str());
  Tensor y = Tensor::empty({x.size(0), out_features_}, x.dtype(), x.device());
  gemm(ctx, false, true, 1.0f, x, weight_.value, 0.0f, y);
  if (has_bias_) add_bias(ctx, y, bias_.value);
  ready_for_backward_ = training_;
  x_ = training_ && !frozen_ ? x : Tensor();
  return y;
}

Tensor Linear::backward(Context& ctx, const Tensor& dy) {
  CUFACE_CHECK(ready_for_backward_, "Linear: backward needs a training-mode forward first");
  CUFACE_CHECK(frozen_ || x_.defined(),
               "Linear: unfrozen after forward, so the input needed for the weight gradient "
               "was not saved");
  CUFACE_CHECK(dy.rank() == 2 && dy.size(1) == out_features_,
               "Linear: expects dy [N, " + std::to_string(out_features_) + "], got " + dy.str());
  if (!frozen_) {
    gemm(ctx, true, false, 1.0f, dy, x_, 1.0f, weight_.grad);
    if (has_bias_) accumulate_bias_grad(ctx, dy, bias_.grad);
  }
  Tensor dx = Tensor::empty({dy.size(0), in_features_}, dy.dtype(), dy.device());
  gemm(ctx, false, false, 1.0f, dy, weight_.value, 0.0f, dx);
  x_ = Tensor();
  ready_for_backward_ = false;
  return dx;
}

}  // namespace cuface
