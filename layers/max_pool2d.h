// MaxPool2d over NHWC activations (kernels/pool.h); default 3x3, stride 2, padding 1 (ResNet's stem).
//   forward:  y = max over each window; saves the winners' positions (i32, the shape of y)
//   backward: dx = dy routed to the winners (summed where windows overlap)
// No parameters. f32, or bf16 on CUDA.
#pragma once
#include "kernels/pool.h"
#include "layers/layer.h"

namespace cuface {

class MaxPool2d : public Layer {
 public:
  explicit MaxPool2d(int64_t kernel = 3, int64_t stride = 2, int64_t padding = 1);
  const char* type() const override { return "MaxPool2d"; }

  Tensor forward(Context& ctx, const Tensor& x) override;
  Tensor backward(Context& ctx, const Tensor& dy) override;

 private:
  Pool2dGeometry geometry_;
  Shape x_shape_;
  Tensor argmax_;  // saved by a training-mode forward; released by backward
};

}  // namespace cuface
