// The margin head's loss and gradient computed the way a framework composes it (InsightFace's
// PyTorch ArcFace: one-hot, margin over the whole matrix, blend, softmax, cross-entropy, gradient),
// as a chain of single-purpose passes, each over the whole [N, C] matrix, with four [N, C] buffers
// of its own. Same inputs, outputs and math as margin_softmax_ce (kernels/margin.h); it exists as the
// baseline that bench/bench_margin measures the fused kernel against (llm.c's habit of keeping the
// previous version of a kernel beside the new one), and the tests check the two agree.
//
//   onehot = (j == y_i)                   phi = f(cos) everywhere        z = s (onehot phi + (1 - onehot) cos)
//   max_i = max_j z                       p = exp(z - max)               sum_i = sum_j p,  p /= sum
//   loss_i = -sum_j onehot (z - max - log sum)         dcos = s (p - onehot) (onehot f'(cos) + 1 - onehot) / L
#pragma once
#include "kernels/margin.h"

namespace cuface {

namespace cpu {
void margin_softmax_ce_unfused(Context& ctx, Tensor& cos, const Tensor& labels, const MarginParams& params,
                               Tensor& row_stats);
}
namespace cuda {
void margin_softmax_ce_unfused(Context& ctx, Tensor& cos, const Tensor& labels, const MarginParams& params,
                               Tensor& row_stats);
}

inline void margin_softmax_ce_unfused(Context& ctx, Tensor& cos, const Tensor& labels, const MarginParams& params,
                                      Tensor& row_stats) {
  check_loss_outputs(cos, labels, row_stats, "margin_softmax_ce_unfused");
  CUFACE_DISPATCH(cos, cpu::margin_softmax_ce_unfused(ctx, cos, labels, params, row_stats),
                  cuda::margin_softmax_ce_unfused(ctx, cos, labels, params, row_stats));
}

}  // namespace cuface
