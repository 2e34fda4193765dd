// Fused softmax cross-entropy for the small classifiers (gender: 2 classes, age: 7 bins), written in
// place over the logits so no second [N, C] buffer exists (llm.c's fused classifier):
//
//   p_ij = softmax(z_i)_j,  target q_ij = 1 - a on the label y_i, a / (C - 1) on the other classes
//   (a = smoothing; a = 0 is the one-hot target; the original's gender/age heads use a = 0.1),
//   loss_i = -sum_j q_ij log p_ij = lse(z_i) - sum_j q_ij z_ij,
//   dL/dz_ij = (p_ij - q_ij) / L     with L the number of labelled rows (the loss is their mean).
//
// Rows labelled -1 are ignored: zero loss, zero gradient, not counted in L. A label >= C is a caller
// bug: the CPU throws, the GPU (which cannot throw without synchronising) writes NaN loss and gradient
// for that row so the logged loss shows it. row_stats as in kernels/loss_stats.h (target = p_iy).
#pragma once
#include "kernels/loss_stats.h"

namespace cuface {

namespace cpu {
void softmax_ce(Context& ctx, Tensor& logits, const Tensor& labels, float smoothing, Tensor& row_stats);
}
namespace cuda {
void softmax_ce(Context& ctx, Tensor& logits, const Tensor& labels, float smoothing, Tensor& row_stats);
}

// logits [N, C] f32 in, dL/dlogits out; labels [N] i32; row_stats [N, 3] f32 out.
inline void softmax_ce(Context& ctx, Tensor& logits, const Tensor& labels, float smoothing, Tensor& row_stats) {
  check_loss_outputs(logits, labels, row_stats, "softmax_ce");
  CUFACE_CHECK(smoothing >= 0.0f && smoothing < 1.0f, "softmax_ce: smoothing must be in [0, 1)");
  CUFACE_CHECK(smoothing == 0.0f || logits.size(1) >= 2, "softmax_ce: label smoothing needs at least 2 classes");
  CUFACE_DISPATCH(logits, cpu::softmax_ce(ctx, logits, labels, smoothing, row_stats),
                  cuda::softmax_ce(ctx, logits, labels, smoothing, row_stats));
}

}  // namespace cuface
