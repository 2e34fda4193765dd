// Pooling on NHWC tensors.
//
// Max pooling (PyTorch's MaxPool2d without dilation or ceil mode; padding reads as -infinity):
//   y[n, oh, ow, c] = max over kh, kw < kernel of x[n, oh * stride - pad + kh, ow * stride - pad + kw, c]
//   OH = (H + 2 * pad - kernel) / stride + 1 (floor); pad <= kernel / 2, as PyTorch requires, so every
//   window holds at least one real input.
//   The forward pass also writes argmax[n, oh, ow, c] = ih * W + iw (i32), the input pixel that won:
//   the first maximum in (kh, kw) scan order, or the first NaN (NaN propagates, as in PyTorch).
//   Backward routes each dy to its winner: dx[n, ih, iw, c] = sum of dy over the windows whose argmax
//   is (ih, iw), computed as a gather over the windows covering each input pixel, so dx is written
//   once per element, deterministically, without atomics or a zeroing pass. Saving the argmax (one
//   i32 per output) instead of recomputing it from x keeps x itself free to be released after the
//   forward pass and makes ties unambiguous.
//
// Global average pooling: y[n, c] = mean over h, w of x[n, h, w, c]; dx[n, h, w, c] = dy[n, c] / (H * W).
//
// f32 on both backends; bf16 activations on CUDA (arithmetic in f32).
#pragma once
#include "kernels/dispatch.h"

namespace cuface {

struct Pool2dGeometry {
  int64_t kernel = 3, stride = 2, padding = 1;
};

// y's shape for input shape x [N, H, W, C]; throws with a clear message on invalid geometry.
Shape max_pool2d_output_shape(const Shape& x, const Pool2dGeometry& geometry);

namespace cpu {
void max_pool2d_forward(Context& ctx, const Tensor& x, Tensor& y, Tensor& argmax, const Pool2dGeometry& geometry);
void max_pool2d_backward(Context& ctx, const Tensor& dy, const Tensor& argmax, Tensor& dx,
                         const Pool2dGeometry& geometry);
void global_avg_pool_forward(Context& ctx, const Tensor& x, Tensor& y);
void global_avg_pool_backward(Context& ctx, const Tensor& dy, Tensor& dx);
}  // namespace cpu

namespace cuda {
void max_pool2d_forward(Context& ctx, const Tensor& x, Tensor& y, Tensor& argmax, const Pool2dGeometry& geometry);
void max_pool2d_backward(Context& ctx, const Tensor& dy, const Tensor& argmax, Tensor& dx,
                         const Pool2dGeometry& geometry);
void global_avg_pool_forward(Context& ctx, const Tensor& x, Tensor& y);
void global_avg_pool_backward(Context& ctx, const Tensor& dy, Tensor& dx);
}  // namespace cuda

// Shape, device and dtype checks: x/dx [N, H, W, C] and y/dy with its pooled shape (and argmax, i32,
// the shape of y, when given).
void check_max_pool2d(const Tensor& x, const Tensor& y, const Tensor& argmax, const Pool2dGeometry& geometry,
                      const char* what);
void check_global_avg_pool(const Tensor& x, const Tensor& y, const char* what);

inline void max_pool2d_forward(Context& ctx, const Tensor& x, Tensor& y, Tensor& argmax,
                               const Pool2dGeometry& geometry = {}) {
  check_max_pool2d(x, y, argmax, geometry, "max_pool2d_forward");
  CUFACE_DISPATCH(y, cpu::max_pool2d_forward(ctx, x, y, argmax, geometry),
                  cuda::max_pool2d_forward(ctx, x, y, argmax, geometry));
}

inline void max_pool2d_backward(Context& ctx, const Tensor& dy, const Tensor& argmax, Tensor& dx,
                                const Pool2dGeometry& geometry = {}) {
  check_max_pool2d(dx, dy, argmax, geometry, "max_pool2d_backward");
  CUFACE_DISPATCH(dx, cpu::max_pool2d_backward(ctx, dy, argmax, dx, geometry),
                  cuda::max_pool2d_backward(ctx, dy, argmax, dx, geometry));
}

inline void global_avg_pool_forward(Context& ctx, const Tensor& x, Tensor& y) {
  check_global_avg_pool(x, y, "global_avg_pool_forward");
  CUFACE_DISPATCH(y, cpu::global_avg_pool_forward(ctx, x, y), cuda::global_avg_pool_forward(ctx, x, y));
}

inline void global_avg_pool_backward(Context& ctx, const Tensor& dy, Tensor& dx) {
  check_global_avg_pool(dx, dy, "global_avg_pool_backward");
  CUFACE_DISPATCH(dx, cpu::global_avg_pool_backward(ctx, dy, dx), cuda::global_avg_pool_backward(ctx, dy, dx));
}

}  // namespace cuface
