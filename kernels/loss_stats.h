// What the fused loss kernels (margin.h, softmax_ce.h) report besides the gradient, kept on the
// device so logging needs no synchronisation until someone asks for the numbers.
//
//   row_stats [N, 3] f32, one row per sample:  loss_i, correct_i (1 when the argmax of the unmodified
//     scores is the label, else 0), target_i (the target's cosine for the margin head, its softmax
//     probability for the softmax head). Ignored rows (label -1) hold zeros.
//   stats [4] f32 = { mean loss, accuracy, mean target, labelled rows }, means over the labelled rows
//     (all zero when there are none). stats[0] is the loss the heads return, as a 1-element view.
#pragma once
#include "kernels/dispatch.h"

namespace cuface {

constexpr int kRowStatColumns = 3;
constexpr int kStatCount = 4;

namespace cpu {
void reduce_row_stats(Context& ctx, const Tensor& labels, const Tensor& row_stats, Tensor& stats);
}
namespace cuda {
void reduce_row_stats(Context& ctx, const Tensor& labels, const Tensor& row_stats, Tensor& stats);
}

// Checks labels [N] i32 and row_stats [N, 3] f32 beside a kernel's [N, ...] input, all on one device.
void check_loss_outputs(const Tensor& input, const Tensor& labels, const Tensor& row_stats, const char* what);

inline void reduce_row_stats(Context& ctx, const Tensor& labels, const Tensor& row_stats, Tensor& stats) {
  check_loss_outputs(row_stats, labels, row_stats, "reduce_row_stats");
  check_shape(stats, Shape{kStatCount}, "reduce_row_stats");
  check_same_device(labels, stats, "reduce_row_stats");
  CUFACE_DISPATCH(stats, cpu::reduce_row_stats(ctx, labels, row_stats, stats),
                  cuda::reduce_row_stats(ctx, labels, row_stats, stats));
}

}  // namespace cuface
