// PReLU with one learned slope per channel (the last axis), as in InsightFace's IResNet:
//   y = x > 0 ? x : slope[c] * x
// Parameter "weight" [C] (PyTorch's nn.PReLU(num_parameters=C) name), initialised to 0.25 as
// PyTorch does; weight decay applies by default, as in InsightFace's PyTorch recipe (it decays every
// parameter). Saves x for backward (dx needs its sign and dslope its value).
#pragma once
#include "layers/layer.h"

namespace cuface {

class PReLU : public Layer {
 public:
  explicit PReLU(int64_t channels, float initial_slope = 0.25f, bool decay = true);
  const char* type() const override { return "PReLU"; }
  Tensor forward(Context& ctx, const Tensor& x) override;
  Tensor backward(Context& ctx, const Tensor& dy) override;
  Parameter& weight() { return weight_; }

 private:
  int64_t channels_;
  Parameter weight_;
  Tensor x_;
};

}  // namespace cuface
