// 2-d convolution (cross-correlation, as in PyTorch) on NHWC tensors, dilation 1, one group.
//
//   x  [N, H, W, C]            input
//   w  [O, KH, KW, C]          filter, "OHWI": one output channel's KH x KW x C taps are contiguous,
//                              in the same (kh, kw, c) order as a row of im2col(x), and the order
//                              cuDNN calls CUDNN_TENSOR_NHWC for filters
//   y  [N, OH, OW, O]          OH = (H + 2 * pad_h - KH) / stride_h + 1 (floor), OW likewise
//
//   forward:          y[n, oh, ow, o] = sum_{kh, kw, c} x[n, ih, iw, c] * w[o, kh, kw, c]
//                     with ih = oh*sh - ph + kh, iw = ow*sw - pw + kw (taps outside the image read zero)
//   backward_data:    dx[n, ih, iw, c] = sum over the (oh, ow, kh, kw) that pair ih, iw as above of
//                     sum_o dy[n, oh, ow, o] * w[o, kh, kw, c]: the transposed convolution of dy with w
//                     (dx is overwritten)
//   backward_filter:  dw[o, kh, kw, c] += sum_{n, oh, ow} dy[n, oh, ow, o] * x[n, ih, iw, c], ih, iw as
//                     above (accumulates, like every parameter gradient)
// The bias is not part of this family: layers add it and reduce its gradient with kernels/bias.h.
//
// CPU (kernels/cpu/conv.cpp): f32, forward as an implicit GEMM, backward as im2col + SGEMM; 3x3
// convolutions with stride 1 and padding 1 over enough pixels by Winograd's F(2x2, 3x3) in all three
// passes (kernels/cpu/winograd.h). CUDA
// (kernels/cuda/conv.cu): cuDNN, f32 or bf16 tensors (x, dy, dx, y and w share one dtype; dw is
// always an f32 accumulator). The context's precision picks the math: fp32 exact (no TF32), tf32
// tensor cores for f32 data, bf16 tensor cores for bf16 data.
//
// PyTorch stores convolution weights OIHW ([O, C, KH, KW]); oihw_to_ohwi / ohwi_to_oihw convert for
// checkpoints and fixtures.
#pragma once
#include "kernels/dispatch.h"

namespace cuface {

struct Conv2dGeometry {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  Conv2dGeometry() = default;
  Conv2dGeometry(int64_t stride, int64_t padding)
      : stride_h(stride), stride_w(stride), pad_h(padding), pad_w(padding) {}
};

// The output shape for input shape x [N, H, W, C] and filter shape w [O, KH, KW, C]; throws with a
// clear message when the shapes do not fit together or the output would be empty.
Shape conv2d_output_shape(const Shape& x, const Shape& w, const Conv2dGeometry& geometry);

// Layout conversions of a 4-d f32 weight tensor (on any device; the result is on the same device).
Tensor oihw_to_ohwi(const Tensor& oihw);
Tensor ohwi_to_oihw(const Tensor& ohwi);

namespace cpu {
void conv2d_forward(Context& ctx, const Tensor& x, const Tensor& w, Tensor& y, const Conv2dGeometry& geometry);
void conv2d_backward_data(Context& ctx, const Tensor& dy, const Tensor& w, Tensor& dx, const Conv2dGeometry& geometry);
void conv2d_backward_filter(Context& ctx, const Tensor& x, const Tensor& dy, Tensor& dw,
                            const Conv2dGeometry& geometry);
}  // namespace cpu

namespace cuda {
void conv2d_forward(Context& ctx, const Tensor& x, const Tensor& w, Tensor& y, const Conv2dGeometry& geometry);
void conv2d_backward_data(Context& ctx, const Tensor& dy, const Tensor& w, Tensor& dx, const Conv2dGeometry& geometry);
void conv2d_backward_filter(Context& ctx, const Tensor& x, const Tensor& dy, Tensor& dw,
                            const Conv2dGeometry& geometry);
}  // namespace cuda

// Argument checks shared by the three operations (shapes, devices, dtypes); `what` names the caller.
// `w` is the filter, or with `w_is_gradient` the f32 filter gradient.
void check_conv2d(const Tensor& x, const Tensor& w, const Tensor& y, const Conv2dGeometry& geometry, const char* what,
                  bool w_is_gradient = false);

inline void conv2d_forward(Context& ctx, const Tensor& x, const Tensor& w, Tensor& y, const Conv2dGeometry& geometry) {
  check_conv2d(x, w, y, geometry, "conv2d_forward");
  CUFACE_DISPATCH(y, cpu::conv2d_forward(ctx, x, w, y, geometry), cuda::conv2d_forward(ctx, x, w, y, geometry));
}

inline void conv2d_backward_data(Context& ctx, const Tensor& dy, const Tensor& w, Tensor& dx,
                                 const Conv2dGeometry& geometry) {
  check_conv2d(dx, w, dy, geometry, "conv2d_backward_data");
  CUFACE_DISPATCH(dx, cpu::conv2d_backward_data(ctx, dy, w, dx, geometry),
                  cuda::conv2d_backward_data(ctx, dy, w, dx, geometry));
}

inline void conv2d_backward_filter(Context& ctx, const Tensor& x, const Tensor& dy, Tensor& dw,
                                   const Conv2dGeometry& geometry) {
  check_conv2d(x, dw, dy, geometry, "conv2d_backward_filter", true);
  CUFACE_DISPATCH(dw, cpu::conv2d_backward_filter(ctx, x, dy, dw, geometry),
                  cuda::conv2d_backward_filter(ctx, x, dy, dw, geometry));
}

}  // namespace cuface
