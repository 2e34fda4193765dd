#include "layers/margin_head.h"

#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/l2norm.h"
#include "kernels/partial_fc.h"
#include "kernels/random.h"

namespace cuface {

MarginHead::MarginHead(int64_t classes, int64_t features, const MarginHeadOptions& options) : options_(options) {
  CUFACE_CHECK(classes > 0 && features > 0, "MarginHead: classes and features must be positive");
  CUFACE_CHECK(options.sample_rate > 0.0f && options.sample_rate <= 1.0f,
               "MarginHead: --sample-rate must be in (0, 1], got " + std::to_string(options.sample_rate));
  CUFACE_CHECK(options.margin.s > 0.0f, "MarginHead: scale s must be positive");
  weight_.name = "weight";
  weight_.value = Tensor::empty({classes, features});
  Context cpu(Device::CPU);
  fill_normal(cpu, weight_.value, options.seed, 0, 0.0f, 0.01f);
  register_parameter(weight_);
}

void MarginHead::check_input(const Tensor& x) const {
  CUFACE_CHECK(x.defined() && x.rank() == 2 && x.size(1) == weight_.value.size(1) && x.dtype() == DType::F32,
               "MarginHead: expected x f32 [N, " + std::to_string(weight_.value.size(1)) + "], got " +
                   (x.defined() ? x.str() : "undefined"));
  check_same_device(x, weight_.value, "MarginHead");
}

Tensor normalized_cosines(Context& ctx, const Tensor& x, const Tensor& weight) {
  const Device device = x.device();
  Tensor x_hat = Tensor::empty(x.shape(), DType::F32, device), x_norms = Tensor::empty({x.size(0)}, DType::F32, device);
  Tensor w_hat = Tensor::empty(weight.shape(), DType::F32, device);
  Tensor w_norms = Tensor::empty({weight.size(0)}, DType::F32, device);
  l2norm_forward(ctx, x, x_hat, x_norms);
  l2norm_forward(ctx, weight, w_hat, w_norms);
  Tensor cos = Tensor::empty({x.size(0), weight.size(0)}, DType::F32, device);
  gemm(ctx, false, true, 1.0f, x_hat, w_hat, 0.0f, cos);
  return cos;
}

Tensor training_cosines(Context& ctx, const Tensor& x_hat, const Tensor& centres, Tensor& centre_norms,
                        Tensor& centres_hat) {
  const Device device = x_hat.device();
  const int64_t rows = x_hat.size(0), count = centres.size(0), dim = centres.size(1);
  centre_norms = Tensor::empty({count}, DType::F32, device);
  Tensor cos = Tensor::empty({rows, count}, DType::F32, device);
  if (ctx.precision() == Precision::BF16 && device == Device::CUDA) {
    // bf16 GEMM operands, written directly by the normalisation; cosines and all that follows in fp32.
    centres_hat = Tensor::empty({count, dim}, DType::BF16, device);
    l2norm_forward(ctx, centres, centres_hat, centre_norms);
    gemm(ctx, false, true, 1.0f, cast_to(ctx, x_hat, DType::BF16), centres_hat, 0.0f, cos);
  } else {
    centres_hat = Tensor::empty({count, dim}, DType::F32, device);
    l2norm_forward(ctx, centres, centres_hat, centre_norms);
    gemm(ctx, false, true, 1.0f, x_hat, centres_hat, 0.0f, cos);
  }
  return cos;
}

MarginBackwardOperands margin_backward_operands(Context& ctx, const Tensor& dcos, const Tensor& x_hat,
                                                const Tensor& centres_hat) {
  if (centres_hat.dtype() != DType::BF16) return {dcos, x_hat, centres_hat, centres_hat};
  return {cast_to(ctx, dcos, DType::BF16), cast_to(ctx, x_hat, DType::BF16), centres_hat,
          Tensor::empty(centres_hat.shape(), DType::F32, centres_hat.device())};
}

void add_weight_gradient(Context& ctx, const Tensor& dcos, const Tensor& x_hat, const Tensor& centres,
                         const Tensor& centre_norms, Tensor& buffer, const Tensor& index, Tensor& weight_grad) {
  gemm(ctx, true, false, 1.0f, dcos, x_hat, 0.0f, buffer);
  if (index.defined()) {
    l2norm_backward(ctx, centres, centre_norms, buffer, buffer, false);
    scatter_add_rows(ctx, buffer, index, weight_grad);
  } else {
    l2norm_backward(ctx, centres, centre_norms, buffer, weight_grad, true);
  }
}

Tensor MarginHead::forward(Context& ctx, const Tensor& x) {
  check_input(x);
  return normalized_cosines(ctx, x, weight_.value);
}

Tensor MarginHead::forward(Context& ctx, const Tensor& x, const Tensor& labels) {
  check_input(x);
  CUFACE_CHECK(labels.defined() && labels.dtype() == DType::I32 && labels.shape() == Shape{x.size(0)},
               "MarginHead: expected labels i32 [" + std::to_string(x.size(0)) + "]");
  check_same_device(x, labels, "MarginHead labels");
  const Device device = x.device();
  const int64_t rows = x.size(0), dim = x.size(1);

  x_ = x;
  x_hat_ = Tensor::empty({rows, dim}, DType::F32, device);
  x_norms_ = Tensor::empty({rows}, DType::F32, device);
  l2norm_forward(ctx, x, x_hat_, x_norms_);

  if (sampling()) {
    const int64_t sample = partial_fc_sample_count(classes(), rows, options_.sample_rate);
    index_ = Tensor::empty({sample}, DType::I32, device);
    labels_ = Tensor::empty({rows}, DType::I32, device);
    select_classes(ctx, labels, classes(), options_.seed, {sampling_step_ + 1, sampling_counter_}, index_,
                   labels_);
    ++sampling_step_;
    centres_ = Tensor::empty({sample, dim}, DType::F32, device);
    gather_rows(ctx, weight_.value, index_, centres_);
  } else {
    index_ = Tensor();
    labels_ = labels;
    centres_ = weight_.value;
  }
  cos_ = training_cosines(ctx, x_hat_, centres_, centre_norms_, centres_hat_);

  row_stats_ = Tensor::empty({rows, kRowStatColumns}, DType::F32, device);
  stats_ = Tensor::empty({kStatCount}, DType::F32, device);
  margin_softmax_ce(ctx, cos_, labels_, options_.margin, row_stats_);  // cos_ now holds dL/dcos
  reduce_row_stats(ctx, labels_, row_stats_, stats_);
  return stats_.slice(0, 1);
}

Tensor MarginHead::backward(Context& ctx) {
  CUFACE_CHECK(cos_.defined(), "MarginHead: backward without a training forward");
  const Device device = x_.device();
  MarginBackwardOperands in = margin_backward_operands(ctx, cos_, x_hat_, centres_hat_);
  // dx^ = dcos W^, then dx = (dx^ - x^ <x^, dx^>) / |x| in place.
  Tensor dx = Tensor::empty(x_.shape(), DType::F32, device);
  gemm(ctx, false, false, 1.0f, in.dcos, in.centres_hat, 0.0f, dx);
  l2norm_backward(ctx, x_, x_norms_, dx, dx, false);

  if (!frozen_) add_weight_gradient(ctx, in.dcos, in.x_hat, centres_, centre_norms_, in.buffer, index_, weight_.grad);
  // Nothing of this step is needed any more (the statistics stay for stats()).
  x_ = x_hat_ = x_norms_ = centres_ = centres_hat_ = centre_norms_ = cos_ = labels_ = index_ = row_stats_ = Tensor();
  return dx;
}

}  // namespace cuface
