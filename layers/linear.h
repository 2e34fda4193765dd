// Linear: y = x W^T + b, with W [out, in] in PyTorch's layout, through kernels/gemm.h.
//
//   forward:  y [N, out] = x [N, in] * W^T + b
//   backward: W.grad += dy^T x, b.grad += sum over rows of dy (unless frozen); returns dx = dy W
//   saved:    x, for dW (nothing when frozen or in evaluation mode); released by backward
//
// Parameters "weight" [out, in] and, with bias, "bias" [out] (no weight decay). Initialisation as
// PyTorch's nn.Linear: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)), from Philox(seed).
// bf16 activations (CUDA): y and dx take x's dtype; cuBLAS reads bf16 copies of W with f32
// accumulation, and dW accumulates in f32 directly.
#pragma once
#include "layers/layer.h"

namespace cuface {

class Linear : public Layer {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true, uint64_t seed = 0);
  const char* type() const override { return "Linear"; }

  Tensor forward(Context& ctx, const Tensor& x) override;
  // 2 x rows x in x out per GEMM; backward runs two (dx and dW).
  ProfileWork work(Pass pass, const Tensor& in, const Tensor& out) const override;
  Tensor backward(Context& ctx, const Tensor& dy) override;

  Parameter& weight() { return weight_; }
  Parameter* bias() { return has_bias_ ? &bias_ : nullptr; }

 private:
  int64_t in_features_, out_features_;
  bool has_bias_;
  Parameter weight_, bias_;

  bool ready_for_backward_ = false;
  Tensor x_;  // the input, for dW
};

}  // namespace cuface
