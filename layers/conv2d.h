// Conv2d: a 2-d convolution over NHWC activations (kernels/conv.h), square kernel, optional bias.
//
//   forward:  y = conv(x, weight) + bias                 x [N, H, W, in] -> y [N, OH, OW, out]
//   backward: weight.grad += dW, bias.grad += db (unless frozen); returns dx (unless the input
//             gradient is switched off, e.g. for the first layer, whose input is the image)
//   saved:    x, for dW (nothing when frozen or in evaluation mode); released by backward
//
// Parameters: "weight" stored OHWI [out, k, k, in] (Parameter::ohwi; weight_oihw / set_weight_oihw
// give and take PyTorch's [out, in, k, k]) and, with bias, "bias" [out] (no weight decay).
// Initialisation as torchvision's ResNet: weight ~ N(0, 2 / (out * k * k)) (Kaiming normal, fan-out,
// ReLU gain), bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's default), both from Philox(seed).
//
// bf16 activations (CUDA): when x is bf16, y and dx are bf16 and the convolution reads a bf16 copy of
// the f32 master weight, refreshed by every forward; gradients stay f32.
#pragma once
#include "kernels/conv.h"
#include "layers/layer.h"

namespace cuface {

class Conv2d : public Layer {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride = 1, int64_t padding = 0,
         bool bias = false, uint64_t seed = 0);
  const char* type() const override { return "Conv2d"; }

  Tensor forward(Context& ctx, const Tensor& x) override;
  // 2 x outputs x taps x input channels per pass; backward computes dx and dW: twice that.
  ProfileWork work(Pass pass, const Tensor& in, const Tensor& out) const override;
  Tensor backward(Context& ctx, const Tensor& dy) override;

  // Without the input gradient, backward returns an undefined tensor and skips that convolution.
  void set_input_gradient(bool needed) { input_gradient_ = needed; }

  Parameter& weight() { return weight_; }
  Parameter* bias() { return has_bias_ ? &bias_ : nullptr; }

  // The weight in PyTorch's order [out, in, k, k] (on the weight's device), and back.
  Tensor weight_oihw() const;
  void set_weight_oihw(const Tensor& oihw);

 private:
  // The weight in x's dtype: the f32 master, or its bf16 copy (refreshed here).
  const Tensor& weight_for(Context& ctx, DType dtype);

  int64_t in_channels_, out_channels_, kernel_;
  Conv2dGeometry geometry_;
  bool has_bias_;
  bool input_gradient_ = true;
  Parameter weight_, bias_;
  Tensor weight_bf16_;

  // Saved by a training-mode forward for backward.
  bool ready_for_backward_ = false;
  Shape x_shape_;
  Tensor x_;
};

}  // namespace cuface
