// MarginHead: the face-recognition classifier with an additive angular or cosine margin (ArcFace,
// CosFace, InsightFace's combined margin; kernels/margin.h has the math), and optional Partial FC.
//
// Owns W [C, D] as the parameter "weight" (the PyTorch/InsightFace layout, one row per identity,
// initialised N(0, 0.01) like InsightFace). A training step:
//   x^ = x / |x|,  W^ = W / |W|                        (kernels/l2norm.h; norms saved)
//   cos = x^ W^T                   [N, C]               (one GEMM)
//   fused row kernel: margin on the target, softmax, cross-entropy, statistics, and dL/dcos written
//   over cos                                           (kernels/margin.h)
//   dx^ = dcos W^,  dW^ = dcos^T x^                    (two GEMMs)
//   dx = (dx^ - x^ <x^, dx^>) / |x|,  dW += (dW^ - W^ <W^, dW^>) / |W|   (row-wise)
// dW^ is written over the W^ buffer once dx^ has consumed it, so besides W and its gradient the
// head holds one [C, D] and one [N, C] buffer.
//
// Precision: with ctx.precision() == BF16 on a GPU, x^ and W^ enter the forward GEMM as bf16 (W^
// written directly in bf16 by the normalisation, x^ cast) and the cosines are fp32. The fp32 W^ is
// not kept: backward recomputes it (one pass over W) and gives its two GEMMs fp32 operands, which
// kernels/gemm.h converts to bf16 copies in the context's workspace under BF16. Everything from the
// cosines on (margin, softmax, loss, normalisation backward) is fp32.
//
// Partial FC (sample_rate r < 1): each step uses the K = max(ceil(r C), N) centres chosen by
// kernels/partial_fc.h (all positives plus random negatives from Philox(seed, step)), gathers those
// rows of W, runs the same head on them with remapped labels, and scatters their gradient back: rows
// not sampled get no gradient this step. r = 1 is the exact head.
#pragma once
#include <utility>

#include "kernels/margin.h"
#include "layers/loss_head.h"

namespace cuface {

// Inference cosines of a margin head: x^ W^T [N, C] for rows x [N, D] and class centres W [C, D], both
// L2-normalised (fp32).
Tensor normalized_cosines(Context& ctx, const Tensor& x, const Tensor& weight);

// The training cosines x^ W^T [N, K] of L2-normalised rows x^ (fp32) against centres W [K, D]; writes
// W's row norms and W^ (`centres_hat`): bf16 under a bf16 GPU context, where x^ and W^ enter the GEMM
// as bf16, else fp32. Both margin heads' forward.
Tensor training_cosines(Context& ctx, const Tensor& x_hat, const Tensor& centres, Tensor& centre_norms,
                        Tensor& centres_hat);
// Backward's GEMM operands from forward's tensors: under a bf16 forward, dcos and x^ cast to bf16 once
// each (both GEMMs read them) and W^ as forward wrote it (bf16); else the f32 tensors themselves.
// `buffer` receives dW^ (f32, W^'s shape): W^'s own storage in fp32 (the dx GEMM has read it by
// then), new storage under bf16.
struct MarginBackwardOperands {
  Tensor dcos, x_hat, centres_hat, buffer;
};
MarginBackwardOperands margin_backward_operands(Context& ctx, const Tensor& dcos, const Tensor& x_hat,
                                                const Tensor& centres_hat);
// W's gradient from dL/dcos [N, K] and x^ [N, D]: dW^ = dcos^T x^ written into `buffer` (f32 [K, D]),
// then through the normalisation of the centres' rows and added into `weight_grad`: straight, or into
// the rows `index` names (Partial FC; undefined: all).
void add_weight_gradient(Context& ctx, const Tensor& dcos, const Tensor& x_hat, const Tensor& centres,
                         const Tensor& centre_norms, Tensor& buffer, const Tensor& index, Tensor& weight_grad);

struct MarginHeadOptions {
  MarginParams margin;       // type, s, m, m1, m2, m3, easy_margin
  float sample_rate = 1.0f;  // Partial FC: fraction of the classes per step, in (0, 1]
  uint64_t seed = 0;         // weight initialisation, and Partial FC's sampling stream
};

class MarginHead : public LossHead {
 public:
  MarginHead(int64_t classes, int64_t features, const MarginHeadOptions& options = {});
  const char* type() const override { return "MarginHead"; }

  // Inference: the cosines x^ W^T [N, C] (fp32 GEMM operands).
  Tensor forward(Context& ctx, const Tensor& x) override;
  Tensor forward(Context& ctx, const Tensor& x, const Tensor& labels) override;
  Tensor backward(Context& ctx) override;

  Parameter& weight() { return weight_; }
  const MarginHeadOptions& options() const { return options_; }
  int64_t classes() const { return weight_.value.size(0); }
  // Partial FC step t draws from the Philox stream (seed, t + 1) (stream 0 initialised W); t counts
  // training forwards. A resumed run sets it to continue the same sequence of samples.
  uint64_t sampling_step() const { return sampling_step_; }
  // With a counter (i32 [1] on the head's device), the step its kernels add when they run, as Dropout's.
  void set_sampling_step(uint64_t step, Tensor counter = {}) {
    sampling_step_ = step;
    sampling_counter_ = std::move(counter);
  }

 private:
  bool sampling() const { return options_.sample_rate < 1.0f; }
  void check_input(const Tensor& x) const;

  MarginHeadOptions options_;
  Parameter weight_;
  uint64_t sampling_step_ = 0;
  Tensor sampling_counter_;

  // Saved by the training forward for backward.
  Tensor x_, x_norms_, x_hat_;     // input, its row norms, x^ (fp32)
  Tensor centres_, centre_norms_;  // W (or its sampled rows) and their norms
  Tensor centres_hat_;             // W^ (fp32 or bf16); backward writes dW^ into an fp32 one
  Tensor cos_;                     // [N, K] cosines, then dL/dcos
  Tensor labels_;                  // labels as the kernel saw them (remapped under Partial FC)
  Tensor index_;                   // Partial FC: the sampled classes [K]
  Tensor row_stats_;
};

}  // namespace cuface
