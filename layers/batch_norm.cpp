#include "layers/batch_norm.h"

#include "kernels/batchnorm.h"

namespace cuface {

namespace {
Tensor filled(int64_t channels, float value) {
  Tensor t = Tensor::empty({channels});
  for (int64_t c = 0; c < channels; ++c) t.data<float>()[c] = value;
  return t;
}
}  // namespace

BatchNorm::BatchNorm(int64_t channels, BatchNormOptions options) : channels_(channels), options_(options) {
  CUFACE_CHECK(channels > 0, "BatchNorm: channels must be positive, got " + std::to_string(channels));
  CUFACE_CHECK(options.eps > 0, "BatchNorm: eps must be positive");
  CUFACE_CHECK(options.momentum >= 0 && options.momentum <= 1,
               "BatchNorm: momentum must be in [0, 1] (PyTorch convention: 1 - TensorFlow's decay)");
  if (options_.fixed_scale) options_.affine = true;
  if (options_.affine) {
    weight_ = {"weight", filled(channels, 1.0f), Tensor(), !options_.fixed_scale, false};
    bias_ = {"bias", Tensor::zeros({channels}), Tensor(), true, false};
    register_parameter(weight_);
    register_parameter(bias_);
  }
  running_mean_ = {"running_mean", Tensor::zeros({channels}), Tensor(), false, false};
  running_var_ = {"running_var", filled(channels, 1.0f), Tensor(), false, false};
  num_batches_tracked_ = {"num_batches_tracked", Tensor::zeros({}, DType::I32), Tensor(), false, false};
  register_parameter(running_mean_);
  register_parameter(running_var_);
  register_parameter(num_batches_tracked_);
}

Tensor BatchNorm::forward(Context& ctx, const Tensor& x) {
  CUFACE_CHECK(x.rank() >= 2 && x.size(-1) == channels_, "BatchNorm(" + std::to_string(channels_) +
                                                             "): expected [N, C] or [N, H, W, C] input with C = " +
                                                             std::to_string(channels_) + ", got " + x.str());
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  mean_ = Tensor::empty({channels_}, DType::F32, x.device());
  invstd_ = Tensor::empty({channels_}, DType::F32, x.device());
  if (training_)
    batch_norm_forward_train(ctx, x, weight_.value, bias_.value, options_.eps, options_.momentum, options_.relu,
                             running_mean_.value, running_var_.value, num_batches_tracked_.value, y, mean_, invstd_);
  else
    batch_norm_forward_eval(ctx, x, weight_.value, bias_.value, running_mean_.value, running_var_.value, options_.eps,
                            options_.relu, y, mean_, invstd_);
  used_batch_stats_ = training_;
  x_ = x;
  y_ = options_.relu ? y : Tensor();
  return y;
}

Tensor BatchNorm::backward(Context& ctx, const Tensor& dy) {
  CUFACE_CHECK(x_.defined(), "BatchNorm: backward called before forward");
  Tensor dx = Tensor::empty(x_.shape(), x_.dtype(), x_.device());
  Tensor no_gradient;
  const bool parameter_grads = options_.affine && !frozen_;
  Tensor& dgamma = parameter_grads && weight_.trainable ? weight_.grad : no_gradient;
  Tensor& dbeta = parameter_grads ? bias_.grad : no_gradient;
  batch_norm_backward(ctx, x_, y_, dy, weight_.value, mean_, invstd_, used_batch_stats_, options_.relu, dx, dgamma,
                      dbeta);
  return dx;
}

}  // namespace cuface
