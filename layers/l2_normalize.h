// L2Normalize: each row of x [N, D] divided by its L2 norm (the face embedding before a margin head
// or a verification distance). No parameters; keeps x and the norms for backward.
//   y = x / |x|,   dx = (dy - y <y, dy>) / |x|       (kernels/l2norm.h)
#pragma once
#include "layers/layer.h"

namespace cuface {

class L2Normalize : public Layer {
 public:
  const char* type() const override { return "L2Normalize"; }
  Tensor forward(Context& ctx, const Tensor& x) override;
  Tensor backward(Context& ctx, const Tensor& dy) override;

 private:
  Tensor x_, norms_;
};

}  // namespace cuface
