// SoftmaxHead: a fully connected classifier with a fused softmax cross-entropy (the gender and age
// heads): z = x W^T + b, then kernels/softmax_ce.h writes dL/dz over z.
//   backward:  dx = dz W,   dW += dz^T x,   db += dz^T 1
// The bias enters both GEMM directions through a column of ones (Caffe's bias multiplier), so the
// head needs no kernel of its own besides the fused loss. Parameters "weight" [C, D] and "bias" [C]
// (torch.nn.Linear's layout and initialisation, U(-1/sqrt(D), 1/sqrt(D))). The original's hidden
// layers (FC + BN + ReLU + dropout) in front are built from the ordinary layers by the model builder.
//
// Label smoothing a: target 1 - a on the true class and a / (C - 1) on each other one. The default
// here is none (a = 0); the original trains its gender and age heads with a = 0.1 (FaceModelOptions).
#pragma once
#include <vector>

#include "layers/loss_head.h"

namespace cuface {

struct SoftmaxHeadOptions {
  float label_smoothing = 0.0f;
  uint64_t seed = 0;  // initialisation: Philox stream (seed, 0) for W, (seed, 1) for b
};

class SoftmaxHead : public LossHead {
 public:
  SoftmaxHead(int64_t classes, int64_t features, const SoftmaxHeadOptions& options = {});
  const char* type() const override { return "SoftmaxHead"; }

  // Inference: the logits x W^T + b [N, C].
  Tensor forward(Context& ctx, const Tensor& x) override;
  Tensor forward(Context& ctx, const Tensor& x, const Tensor& labels) override;
  Tensor backward(Context& ctx) override;

  Parameter& weight() { return weight_; }
  Parameter& bias() { return bias_; }

 private:
  void check_input(const Tensor& x) const;
  // z = x W^T + b into `logits`; `ones` [N, 1] is the bias multiplier.
  void logits(Context& ctx, const Tensor& x, const Tensor& ones, Tensor& logits);

  SoftmaxHeadOptions options_;
  Parameter weight_, bias_;
  Tensor x_, ones_, dlogits_;  // saved by the training forward
};

// Age in years -> bin for the age head. `lower_edges` are the first ages of bins 1, 2, ... (bin 0
// starts at 0), increasing; an age at or above the last edge falls in the last bin, so the original's
// "labels above 6 are clipped to 6" holds. A negative age (unknown) gives -1, an ignored label.
// The original's exact bin edges are not recorded; the default makes 7 bins:
//   [0, 13) [13, 20) [20, 30) [30, 40) [40, 50) [50, 60) [60, inf)
const std::vector<int>& default_age_edges();
int age_to_bin(int age, const std::vector<int>& lower_edges = default_age_edges());

}  // namespace cuface
