// GlobalAvgPool: the mean over all pixels, NHWC [N, H, W, C] -> [N, C] (kernels/pool.h).
//   backward: dx[n, h, w, c] = dy[n, c] / (H * W)
// No parameters; saves only the input shape. f32, or bf16 on CUDA.
#pragma once
#include "layers/layer.h"

namespace cuface {

class GlobalAvgPool : public Layer {
 public:
  const char* type() const override { return "GlobalAvgPool"; }
  Tensor forward(Context& ctx, const Tensor& x) override;
  Tensor backward(Context& ctx, const Tensor& dy) override;

 private:
  bool ready_for_backward_ = false;
  Shape x_shape_;
};

}  // namespace cuface
