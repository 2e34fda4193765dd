#include "layers/softmax_head.h"

#include <cmath>

#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/random.h"
#include "kernels/softmax_ce.h"

namespace cuface {

SoftmaxHead::SoftmaxHead(int64_t classes, int64_t features, const SoftmaxHeadOptions& options) : options_(options) {
  CUFACE_CHECK(classes > 0 && features > 0, "SoftmaxHead: classes and features must be positive");
  CUFACE_CHECK(options.label_smoothing >= 0.0f && options.label_smoothing < 1.0f,
               "SoftmaxHead: label smoothing must be in [0, 1)");
  CUFACE_CHECK(options.label_smoothing == 0.0f || classes >= 2, "SoftmaxHead: label smoothing needs 2 classes or more");
  const float bound = 1.0f / std::sqrt(float(features));
  Context cpu(Device::CPU);
  weight_.name = "weight";
  weight_.value = Tensor::empty({classes, features});
  fill_uniform(cpu, weight_.value, options.seed, 0, -bound, bound);
  bias_.name = "bias";
  bias_.value = Tensor::empty({classes});
  bias_.decay = false;
  fill_uniform(cpu, bias_.value, options.seed, 1, -bound, bound);
  register_parameter(weight_);
  register_parameter(bias_);
}

void SoftmaxHead::check_input(const Tensor& x) const {
  CUFACE_CHECK(x.defined() && x.rank() == 2 && x.size(1) == weight_.value.size(1) && x.dtype() == DType::F32,
               "SoftmaxHead: expected x f32 [N, " + std::to_string(weight_.value.size(1)) + "], got " +
                   (x.defined() ? x.str() : "undefined"));
  check_same_device(x, weight_.value, "SoftmaxHead");
}

void SoftmaxHead::logits(Context& ctx, const Tensor& x, const Tensor& ones, Tensor& z) {
  const Tensor bias_row = bias_.value.reshape({1, bias_.value.numel()});
  gemm(ctx, false, false, 1.0f, ones, bias_row, 0.0f, z);     // z = 1 b^T
  gemm(ctx, false, true, 1.0f, x, weight_.value, 1.0f, z);    // z += x W^T
}

Tensor SoftmaxHead::forward(Context& ctx, const Tensor& x) {
  check_input(x);
  Tensor ones = Tensor::empty({x.size(0), 1}, DType::F32, x.device());
  fill(ctx, ones, 1.0f);
  Tensor z = Tensor::empty({x.size(0), weight_.value.size(0)}, DType::F32, x.device());
  logits(ctx, x, ones, z);
  return z;
}

Tensor SoftmaxHead::forward(Context& ctx, const Tensor& x, const Tensor& labels) {
  check_input(x);
  CUFACE_CHECK(labels.defined() && labels.dtype() == DType::I32 && labels.shape() == Shape{x.size(0)},
               "SoftmaxHead: expected labels i32 [" + std::to_string(x.size(0)) + "]");
  check_same_device(x, labels, "SoftmaxHead labels");
  const int64_t rows = x.size(0);
  x_ = x;
  ones_ = Tensor::empty({rows, 1}, DType::F32, x.device());
  fill(ctx, ones_, 1.0f);
  dlogits_ = Tensor::empty({rows, weight_.value.size(0)}, DType::F32, x.device());
  logits(ctx, x, ones_, dlogits_);
  Tensor row_stats = Tensor::empty({rows, kRowStatColumns}, DType::F32, x.device());
  stats_ = Tensor::empty({kStatCount}, DType::F32, x.device());
  softmax_ce(ctx, dlogits_, labels, options_.label_smoothing, row_stats);  // logits -> dL/dlogits
  reduce_row_stats(ctx, labels, row_stats, stats_);
  return stats_.slice(0, 1);
}

Tensor SoftmaxHead::backward(Context& ctx) {
  CUFACE_CHECK(dlogits_.defined(), "SoftmaxHead: backward without a training forward");
  Tensor dx = Tensor::empty(x_.shape(), DType::F32, x_.device());
  gemm(ctx, false, false, 1.0f, dlogits_, weight_.value, 0.0f, dx);  // dx = dz W
  if (!frozen_) {
    gemm(ctx, true, false, 1.0f, dlogits_, x_, 1.0f, weight_.grad);  // dW += dz^T x
    Tensor bias_grad = bias_.grad.reshape({bias_.grad.numel(), 1});
    gemm(ctx, true, false, 1.0f, dlogits_, ones_, 1.0f, bias_grad);  // db += dz^T 1
  }
  x_ = ones_ = dlogits_ = Tensor();
  return dx;
}

const std::vector<int>& default_age_edges() {
  static const std::vector<int> edges = {13, 20, 30, 40, 50, 60};
  return edges;
}

int age_to_bin(int age, const std::vector<int>& lower_edges) {
  if (age < 0) return -1;
  int bin = 0;
  while (bin < int(lower_edges.size()) && age >= lower_edges[size_t(bin)]) ++bin;
  return bin;
}

}  // namespace cuface
