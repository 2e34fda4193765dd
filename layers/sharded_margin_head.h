// ShardedMarginHead: the margin head (layers/margin_head.h) with its classes split over the ranks of
// a communicator (model parallel, InsightFace's Partial FC layout at sample rate 1; `cuface train
// --shard-classes`). Rank r holds rows [first, first + count) of W, an even split (the first C mod K
// ranks one row more), so a head of C x D floats costs each GPU C/K x D.
//
//   forward(x [n, D], labels [n]) on every rank, each with its own n rows (the same n everywhere):
//     x_all = all_gather(x), labels_all = all_gather(labels)          [K n, D], [K n]
//     cos = x^_all W^_r^T                                              [K n, C_r]  (one GEMM)
//     the margin softmax over all C classes from two all-reduces of [2|4, K n] (kernels/sharded_margin.h)
//   backward:
//     dW_r += normalisation backward of dcos^T x^_all                  (this rank's rows only)
//     dx^_all = dcos W^_r, summed over the ranks (all-reduce of [K n, D]); each rank keeps its rows
//
// Loss and statistics are those of the whole batch (all K n rows) and the same on every rank. W's
// gradient is exact for that loss and must NOT be averaged over the ranks. backward returns K times
// dL/dx of this rank's rows: the data-parallel trainer averages the other gradients over the ranks
// (divides by K), so what reaches the backbone is the exact gradient of the whole batch's loss.
// Precision as MarginHead's: under bf16 on a GPU the cosine GEMM takes bf16 operands, the rest is fp32.
// Traffic per step: all-gather of K n x D, all-reduce of K n x D, a few K n vectors; nothing of size C.
//
// Partial FC (sample_rate < 1; An et al. 2021, InsightFace's PartialFC): each rank samples its own
// centres among its rows of W (kernels/partial_fc.h: the positives it holds plus random negatives,
// K_r = max(ceil(r C_r), min(K n, C_r))) and runs the above on them; the softmax is over the union
// of the ranks' samples; rows not sampled get no gradient this step. On one rank this is MarginHead's
// sampling exactly (same classes, same draws).
#pragma once
#include "engine/communicator.h"
#include "layers/margin_head.h"

namespace cuface {

class ShardedMarginHead : public LossHead {
 public:
  // `classes` is the global C; W's slice is initialised as MarginHead(classes, ...) initialises those
  // rows, so the sharded and unsharded heads start from the same W.
  ShardedMarginHead(Communicator& comm, int64_t classes, int64_t features, const MarginHeadOptions& options = {});
  const char* type() const override { return "ShardedMarginHead"; }

  // Inference: the cosines of x against this rank's classes [n, C_r].
  Tensor forward(Context& ctx, const Tensor& x) override;
  Tensor forward(Context& ctx, const Tensor& x, const Tensor& labels) override;
  Tensor backward(Context& ctx) override;

  Parameter& weight() { return weight_; }
  int64_t classes() const { return classes_; }       // C over all ranks
  int64_t first_class() const { return first_; }     // this rank's first row of W
  int64_t local_classes() const { return weight_.value.size(0); }
  // Rank r's rows of a C-row head split over K ranks: [first, first + count).
  static std::pair<int64_t, int64_t> shard_of(int64_t classes, int rank, int world_size);
  // Partial FC's step counter, as MarginHead's (the same Philox streams).
  uint64_t sampling_step() const { return sampling_step_; }
  // With a counter (i32 [1] on the head's device), the step its kernels add when they run, as Dropout's.
  void set_sampling_step(uint64_t step, Tensor counter = {}) {
    sampling_step_ = step;
    sampling_counter_ = std::move(counter);
  }
  // The last training forward's sampled rows of this rank (positions in its slice), under Partial FC.
  const Tensor& sampled_rows() const { return index_; }

 private:
  bool sampling() const { return options_.sample_rate < 1.0f; }

  Communicator& comm_;
  MarginHeadOptions options_;
  int64_t classes_, first_;
  Parameter weight_;
  uint64_t sampling_step_ = 0;
  Tensor sampling_counter_;
  // Saved by the training forward for backward (centres_: W's slice, or its sampled rows).
  Tensor x_, x_norms_, x_hat_all_, centres_, centres_hat_, centre_norms_, cos_, labels_all_, index_;
};

}  // namespace cuface
