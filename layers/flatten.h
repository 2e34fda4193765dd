// Flatten: [N, d1, d2, ...] -> [N, d1 * d2 * ...], a view (no copy); backward reshapes dy back.
// The features keep NHWC order (h, w, c); PyTorch flattens NCHW as (c, h, w). The two agree when
// H = W = 1 (after global pooling); a Linear layer after a larger map, loaded from PyTorch, would
// need its weight columns permuted.
#pragma once
#include "layers/layer.h"

namespace cuface {

class Flatten : public Layer {
 public:
  const char* type() const override { return "Flatten"; }
  Tensor forward(Context& ctx, const Tensor& x) override;
  Tensor backward(Context& ctx, const Tensor& dy) override;

 private:
  Shape x_shape_;
};

}  // namespace cuface
