// The margin softmax cross-entropy of a class-sharded head (layers/sharded_margin_head.h): rank r
// holds the cosines cos [N, C_r] of every row against its own classes [first, first + C_r), and the
// softmax over all C classes is assembled with two all-reduces between three kernels:
//
//   1. sharded_margin_logits: z = s * cos in place, the owned target gets s * f(c) (kernels/margin.h);
//      maxima [2, N] = { max_j z_ij, max_j cos_ij } over this rank's classes; target [4, N] rows 1..3 =
//      { z_iy, c = cos_iy, f'(c) } where this rank owns label y_i, else 0 (row 0 is for step 2).
//      -> all_reduce(maxima, Max): the global row maxima M_i and max cosine
//   2. sharded_margin_exp_sums: target row 0 = sum_j exp(z_ij - M_i) over this rank's classes.
//      -> all_reduce(target, Sum): the global S_i, and the target's z, c, f' from its owner
//   3. sharded_margin_gradient: dL/dcos in place, p_ij = exp(z_ij - M_i) / S_i,
//      dL/dcos_ij = s p_ij / L (j != y),  s (p_iy - 1) f'(c) / L (the owned target),
//      with L the labelled rows of all N; row_stats (kernels/loss_stats.h): loss_i = log S_i + M_i - z_iy,
//      correct_i = (c >= max cosine), target c. Rows labelled -1: zeros.
// The loss and the softmax equal the unsharded kernel's (margin.h) to rounding. Accuracy differs only
// on exact ties: the unsharded kernel counts a tie as correct only when the label is the lowest index.
#pragma once
#include "kernels/margin.h"

namespace cuface {

namespace cpu {
void sharded_margin_logits(Context& ctx, Tensor& cos, const Tensor& labels, int64_t first_class, int64_t classes,
                           const MarginParams& params, Tensor& maxima, Tensor& target);
void sharded_margin_exp_sums(Context& ctx, const Tensor& z, const Tensor& maxima, Tensor& target);
void sharded_margin_gradient(Context& ctx, Tensor& z, const Tensor& labels, int64_t first_class,
                             const MarginParams& params, const Tensor& maxima, const Tensor& target, Tensor& row_stats);
}  // namespace cpu
namespace cuda {
void sharded_margin_logits(Context& ctx, Tensor& cos, const Tensor& labels, int64_t first_class, int64_t classes,
                           const MarginParams& params, Tensor& maxima, Tensor& target);
void sharded_margin_exp_sums(Context& ctx, const Tensor& z, const Tensor& maxima, Tensor& target);
void sharded_margin_gradient(Context& ctx, Tensor& z, const Tensor& labels, int64_t first_class,
                             const MarginParams& params, const Tensor& maxima, const Tensor& target, Tensor& row_stats);
}  // namespace cuda

// Shapes: cos/z [N, C_r] f32, labels [N] i32 (global class indices, -1 ignored), maxima [2, N], target
// [4, N], row_stats [N, 3], all f32 on one device.
void check_sharded_margin(const Tensor& z, const Tensor& labels, const Tensor& maxima, const Tensor& target,
                          const char* what);

// `classes`: the size of the label space, C of all ranks (under Partial FC the layer passes labels
// renumbered to its sampled columns, K, with K + 1 classes: K stands for another rank's class). A
// label outside [-1, classes) is an error on the CPU and makes the loss NaN on the GPU (as
// kernels/margin.h's kernels treat it).
inline void sharded_margin_logits(Context& ctx, Tensor& cos, const Tensor& labels, int64_t first_class,
                                  int64_t classes, const MarginParams& params, Tensor& maxima, Tensor& target) {
  check_sharded_margin(cos, labels, maxima, target, "sharded_margin_logits");
  CUFACE_CHECK(0 <= first_class && first_class + cos.size(1) <= classes,
               "sharded_margin_logits: columns [" + std::to_string(first_class) + ", " +
                   std::to_string(first_class + cos.size(1)) + ") outside the " + std::to_string(classes) + " classes");
  CUFACE_DISPATCH(cos, cpu::sharded_margin_logits(ctx, cos, labels, first_class, classes, params, maxima, target),
                  cuda::sharded_margin_logits(ctx, cos, labels, first_class, classes, params, maxima, target));
}

inline void sharded_margin_exp_sums(Context& ctx, const Tensor& z, const Tensor& labels, const Tensor& maxima,
                                    Tensor& target) {
  check_sharded_margin(z, labels, maxima, target, "sharded_margin_exp_sums");
  CUFACE_DISPATCH(z, cpu::sharded_margin_exp_sums(ctx, z, maxima, target),
                  cuda::sharded_margin_exp_sums(ctx, z, maxima, target));
}

inline void sharded_margin_gradient(Context& ctx, Tensor& z, const Tensor& labels, int64_t first_class,
                                    const MarginParams& params, const Tensor& maxima, const Tensor& target,
                                    Tensor& row_stats) {
  check_sharded_margin(z, labels, maxima, target, "sharded_margin_gradient");
  check_loss_outputs(z, labels, row_stats, "sharded_margin_gradient");
  CUFACE_DISPATCH(z, cpu::sharded_margin_gradient(ctx, z, labels, first_class, params, maxima, target, row_stats),
                  cuda::sharded_margin_gradient(ctx, z, labels, first_class, params, maxima, target, row_stats));
}

}  // namespace cuface
