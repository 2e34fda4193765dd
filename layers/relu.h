// ReLU: y = max(x, 0). Saves its output y (which the next layer holds anyway) and backward masks dy
// with y > 0, so the gradient at x == 0 is 0, as in PyTorch. In a ResNet the ReLU after a BatchNorm
// is better fused into it (BatchNormOptions::relu), and the one after the residual sum too
// (BatchNorm::forward_join); this layer is for the other places.
#pragma once
#include "layers/layer.h"

namespace cuface {

class ReLU : public Layer {
 public:
  const char* type() const override { return "ReLU"; }
  Tensor forward(Context& ctx, const Tensor& x) override;
  Tensor backward(Context& ctx, const Tensor& dy) override;

 private:
  Tensor y_;
};

}  // namespace cuface
