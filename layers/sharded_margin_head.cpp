#include "layers/sharded_margin_head.h"

#include "kernels/gemm.h"
#include "kernels/l2norm.h"
#include "kernels/partial_fc.h"
#include "kernels/random.h"
#include "kernels/sharded_margin.h"

namespace cuface {

std::pair<int64_t, int64_t> ShardedMarginHead::shard_of(int64_t classes, int rank, int world_size) {
  const int64_t base = classes / world_size, extra = classes % world_size;
  return {rank * base + std::min<int64_t>(rank, extra), base + (rank < extra ? 1 : 0)};
}

ShardedMarginHead::ShardedMarginHead(Communicator& comm, int64_t classes, int64_t features,
                                     const MarginHeadOptions& options)
    : comm_(comm), options_(options), classes_(classes) {
  CUFACE_CHECK(classes >= comm.world_size() && features > 0,
               "--shard-classes: " + std::to_string(classes) + " classes cannot be split over " +
                   std::to_string(comm.world_size()) + " ranks");
  CUFACE_CHECK(options.sample_rate > 0.0f && options.sample_rate <= 1.0f,
               "ShardedMarginHead: --sample-rate must be in (0, 1], got " + std::to_string(options.sample_rate));
  CUFACE_CHECK(options.margin.s > 0.0f, "ShardedMarginHead: scale s must be positive");
  const auto [first, count] = shard_of(classes, comm.rank(), comm.world_size());
  first_ = first;
  // The same N(0, 0.01) draws as MarginHead's W has in these rows, drawn for these rows alone.
  Context cpu(Device::CPU);
  weight_.name = "weight";
  weight_.value = Tensor::empty({count, features});
  fill_normal(cpu, weight_.value, options.seed, 0, 0.0f, 0.01f, uint64_t(first * features));
  register_parameter(weight_);
}

Tensor ShardedMarginHead::forward(Context& ctx, const Tensor& x) {
  return normalized_cosines(ctx, x, weight_.value);
}

Tensor ShardedMarginHead::forward(Context& ctx, const Tensor& x, const Tensor& labels) {
  const int64_t dim = weight_.value.size(1);
  CUFACE_CHECK(x.defined() && x.rank() == 2 && x.size(1) == dim && x.dtype() == DType::F32,
               "ShardedMarginHead: expected x f32 [N, " + std::to_string(dim) + "], got " +
                   (x.defined() ? x.str() : "undefined"));
  CUFACE_CHECK(labels.defined() && labels.dtype() == DType::I32 && labels.shape() == Shape{x.size(0)},
               "ShardedMarginHead: expected labels i32 [" + std::to_string(x.size(0)) + "]");
  check_same_device(x, weight_.value, "ShardedMarginHead");
  const Device device = x.device();
  const int64_t rows = x.size(0) * comm_.world_size();

  x_ = x;
  x_norms_ = Tensor::empty({x.size(0)}, DType::F32, device);
  Tensor x_hat = Tensor::empty(x.shape(), DType::F32, device);
  l2norm_forward(ctx, x, x_hat, x_norms_);
  x_hat_all_ = Tensor::empty({rows, dim}, DType::F32, device);
  labels_all_ = Tensor::empty({rows}, DType::I32, device);
  comm_.all_gather(ctx, x_hat, x_hat_all_);
  comm_.all_gather(ctx, labels, labels_all_);

  // The columns of this rank: its slice of W with the labels as they are, or under Partial FC its
  // sampled rows with labels renumbered to them (another rank's class: one past them, as the kernels
  // below read a label outside their columns).
  Tensor labels_here = labels_all_;
  int64_t first_here = first_, classes_here = classes_;
  if (sampling()) {
    const int64_t sample = partial_fc_sample_count(local_classes(), rows, options_.sample_rate);
    index_ = Tensor::empty({sample}, DType::I32, device);
    labels_here = Tensor::empty({rows}, DType::I32, device);
    select_classes(ctx, labels_all_, classes_, options_.seed, {sampling_step_ + 1, sampling_counter_}, index_,
                   labels_here, {first_, local_classes()});
    ++sampling_step_;
    centres_ = Tensor::empty({sample, dim}, DType::F32, device);
    gather_rows(ctx, weight_.value, index_, centres_);
    first_here = 0;
    classes_here = sample + 1;
  } else {
    centres_ = weight_.value;
  }
  cos_ = training_cosines(ctx, x_hat_all_, centres_, centre_norms_, centres_hat_);

  Tensor maxima = Tensor::empty({2, rows}, DType::F32, device), target = Tensor::empty({4, rows}, DType::F32, device);
  sharded_margin_logits(ctx, cos_, labels_here, first_here, classes_here, options_.margin, maxima, target);
  comm_.all_reduce(ctx, maxima, ReduceOp::Max);
  sharded_margin_exp_sums(ctx, cos_, labels_here, maxima, target);
  comm_.all_reduce(ctx, target, ReduceOp::Sum);
  Tensor row_stats = Tensor::empty({rows, kRowStatColumns}, DType::F32, device);
  sharded_margin_gradient(ctx, cos_, labels_here, first_here, options_.margin, maxima, target, row_stats);  // dL/dcos
  stats_ = Tensor::empty({kStatCount}, DType::F32, device);
  reduce_row_stats(ctx, labels_all_, row_stats, stats_);
  return stats_.slice(0, 1);
}

Tensor ShardedMarginHead::backward(Context& ctx) {
  CUFACE_CHECK(cos_.defined(), "ShardedMarginHead: backward without a training forward");
  const Device device = x_.device();
  const int k = comm_.world_size();
  // dx^ of every row from this rank's classes, summed over the ranks; K x (see the header).
  MarginBackwardOperands in = margin_backward_operands(ctx, cos_, x_hat_all_, centres_hat_);
  Tensor dx_hat_all = Tensor::empty(x_hat_all_.shape(), DType::F32, device);
  gemm(ctx, false, false, float(k), in.dcos, in.centres_hat, 0.0f, dx_hat_all);
  comm_.all_reduce(ctx, dx_hat_all, ReduceOp::Sum);
  const int64_t n = x_.size(0), first_row = n * comm_.rank();
  Tensor dx = Tensor::empty(x_.shape(), DType::F32, device);
  l2norm_backward(ctx, x_, x_norms_, dx_hat_all.slice(first_row, first_row + n), dx, false);
  if (!frozen_)  // this rank's rows of W, from every row of the batch
    add_weight_gradient(ctx, in.dcos, in.x_hat, centres_, centre_norms_, in.buffer, index_, weight_.grad);
  x_ = x_norms_ = x_hat_all_ = centres_ = centres_hat_ = centre_norms_ = cos_ = labels_all_ = Tensor();
  return dx;
}

}  // namespace cuface
