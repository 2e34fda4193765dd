#include "layers/batch_norm.h"

#include "kernels/batchnorm.h"
#include "kernels/elementwise.h"

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

Tensor BatchNorm::forward(Context& ctx, const Tensor& x) { return forward_join(ctx, x, Tensor()); }

Tensor BatchNorm::forward_join(Context& ctx, const Tensor& x, const Tensor& shortcut) {
  CUFACE_CHECK(x.rank() >= 2 && x.size(-1) == channels_, "BatchNorm(" + std::to_string(channels_) +
                                                             "): expected [N, C] or [N, H, W, C] input with C = " +
                                                             std::to_string(channels_) + ", got " + x.str());
  CUFACE_CHECK(!shortcut.defined() || (shortcut.shape() == x.shape() && shortcut.dtype() == x.dtype()),
               "BatchNorm: the residual shortcut " + shortcut.str() + " differs from the input " + x.str());
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  mean_ = Tensor::empty({channels_}, DType::F32, x.device());
  invstd_ = Tensor::empty({channels_}, DType::F32, x.device());
  if (training_ && sync_)
    forward_sync(ctx, x, shortcut, y);
  else if (training_)
    batch_norm_forward_train(ctx, x, shortcut, weight_.value, bias_.value, options_.eps, options_.momentum,
                             options_.relu, running_mean_.value, running_var_.value, num_batches_tracked_.value, y,
                             mean_, invstd_);
  else
    batch_norm_forward_eval(ctx, x, shortcut, weight_.value, bias_.value, running_mean_.value, running_var_.value,
                            options_.eps, options_.relu, y, mean_, invstd_);
  used_batch_stats_ = training_;
  joined_ = shortcut.defined();
  x_ = x;
  y_ = options_.relu ? y : Tensor();
  return y;
}

Tensor BatchNorm::backward(Context& ctx, const Tensor& dy) {
  CUFACE_CHECK(!joined_, "BatchNorm: forward_join's backward is backward_join");
  return backward_gradients(ctx, dy, false).dx;
}

// The passes over the activations, each as large as x: training's forward reads x for the statistics,
// then reads x and writes y (evaluation: the second pass alone); backward reads x and dy (and y, for
// the ReLU mask) for the two gradient sums, then reads them again and writes dx; synchronised, one more
// pass corrects dx with the sums over every rank (reads x and dx, writes dx).
ProfileWork BatchNorm::work(Pass pass, const Tensor& in, const Tensor&) const {
  const int synchronised = sync_ && used_batch_stats_ ? 3 : 0;
  const int passes = pass == Pass::Forward ? (training_ ? 3 : 2) : (options_.relu ? 7 : 5) + synchronised;
  return {0, passes * tensor_bytes(in)};
}

BatchNorm::JoinGradients BatchNorm::backward_join(Context& ctx, const Tensor& dy) {
  CUFACE_CHECK(joined_ || !x_.defined(), "BatchNorm: backward_join called after a forward without a shortcut");
  return backward_gradients(ctx, dy, true);
}

BatchNorm::JoinGradients BatchNorm::backward_gradients(Context& ctx, const Tensor& dy, bool want_shortcut) {
  CUFACE_CHECK(x_.defined(), "BatchNorm: backward called before forward");
  JoinGradients out;
  out.dx = Tensor::empty(x_.shape(), x_.dtype(), x_.device());
  if (want_shortcut) out.dshortcut = Tensor::empty(x_.shape(), x_.dtype(), x_.device());
  if (used_batch_stats_ && sync_) {
    backward_sync(ctx, dy, out.dx, out.dshortcut);
    return out;
  }
  Tensor no_gradient;
  const bool parameter_grads = options_.affine && !frozen_;
  Tensor& dgamma = parameter_grads && weight_.trainable ? weight_.grad : no_gradient;
  Tensor& dbeta = parameter_grads ? bias_.grad : no_gradient;
  batch_norm_backward(ctx, x_, y_, dy, weight_.value, mean_, invstd_, used_batch_stats_, options_.relu, out.dx,
                      out.dshortcut, dgamma, dbeta);
  return out;
}

// ---- synchronised over the ranks ---------------------------------------------------------------------

namespace {
// Row k of a [2, C] tensor as a [C] view.
Tensor row_of(const Tensor& pair, int64_t k) { return pair.slice(k, k + 1).reshape({pair.size(1)}); }
}  // namespace

void BatchNorm::forward_sync(Context& ctx, const Tensor& x, const Tensor& shortcut, Tensor& y) {
  const int64_t count = x.numel() / channels_ * sync_->world_size();  // the same rows on every rank
  Tensor moments = Tensor::empty({2, channels_}, DType::F32, x.device());
  batch_norm_moments(ctx, x, running_mean_.value, moments);
  sync_->all_reduce(ctx, moments, ReduceOp::Sum);
  Tensor mean = Tensor::empty({channels_}, DType::F32, x.device()), var = Tensor::empty({channels_}, DType::F32, x.device());
  batch_norm_stats_from_moments(ctx, moments, count, options_.momentum, running_mean_.value, running_var_.value,
                                num_batches_tracked_.value, mean, var);
  batch_norm_forward_eval(ctx, x, shortcut, weight_.value, bias_.value, mean, var, options_.eps, options_.relu, y,
                          mean_, invstd_);
}

void BatchNorm::backward_sync(Context& ctx, const Tensor& dy, Tensor& dx, Tensor& dshortcut) {
  const int64_t count = x_.numel() / channels_ * sync_->world_size();
  // k * g (and g, the shortcut's gradient) and this rank's sums of g (row 0) and g * xhat (row 1),
  // then the sums over every rank.
  Tensor sums = Tensor::zeros({2, channels_}, DType::F32, x_.device());
  Tensor sum_g = row_of(sums, 0), sum_gxhat = row_of(sums, 1);
  batch_norm_backward(ctx, x_, y_, dy, weight_.value, mean_, invstd_, false, options_.relu, dx, dshortcut, sum_gxhat,
                      sum_g);
  // The parameter gradients are this rank's share; the gradient all-reduce of the trainer sums them.
  if (options_.affine && !frozen_) {
    axpy(ctx, 1.0f, sum_g, bias_.grad);
    if (weight_.trainable) axpy(ctx, 1.0f, sum_gxhat, weight_.grad);
  }
  sync_->all_reduce(ctx, sums, ReduceOp::Sum);
  batch_norm_sync_input_grad(ctx, x_, weight_.value, mean_, invstd_, sums, count, dx);
}

void BatchNorm::sync_all(Layer& root, Communicator* comm) {
  root.visit([comm](Layer& layer) {
    if (auto* bn = dynamic_cast<BatchNorm*>(&layer)) bn->set_sync(comm);
  });
}

}  // namespace cuface
