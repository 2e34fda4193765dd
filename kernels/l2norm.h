// Row-wise L2 normalisation of a matrix x [rows, D] (embeddings, class centres of a margin head).
//
//   forward:   n_i = max(|x_i|, eps),   y_i = x_i / n_i            (norms n saved for backward)
//   backward:  y = x/|x| has Jacobian dy/dx = (I - y yᵀ) / |x|, symmetric, so
//              dx_i = (dy_i - y_i <y_i, dy_i>) / n_i
//
// backward takes the ORIGINAL x (y_i = x_i / n_i is recomputed on the fly), so a caller may reuse the
// buffer of y once it has consumed it; this is what lets the margin head write dW-hat over W-hat.
// The eps clamp (PyTorch's F.normalize uses the same 1e-12) only keeps an all-zero row finite; there
// the backward formula is not the derivative of the clamped function, which nobody trains through.
// y may be f32 or bf16 (a bf16 GEMM operand written directly, saving a cast pass); x, n, dy, dx are f32.
#pragma once
#include "kernels/dispatch.h"

namespace cuface {

constexpr float kL2NormEps = 1e-12f;

namespace cpu {
void l2norm_forward(Context& ctx, const Tensor& x, Tensor& y, Tensor& norms);
void l2norm_backward(Context& ctx, const Tensor& x, const Tensor& norms, const Tensor& dy, Tensor& dx, bool accumulate);
}  // namespace cpu

namespace cuda {
void l2norm_forward(Context& ctx, const Tensor& x, Tensor& y, Tensor& norms);
void l2norm_backward(Context& ctx, const Tensor& x, const Tensor& norms, const Tensor& dy, Tensor& dx, bool accumulate);
}  // namespace cuda

void check_l2norm(const Tensor& x, const Tensor& norms, const Tensor& other, const char* what);

// y = x / max(|x|, eps) per row; norms [rows] receives max(|x|, eps).
inline void l2norm_forward(Context& ctx, const Tensor& x, Tensor& y, Tensor& norms) {
  check_l2norm(x, norms, y, "l2norm_forward");
  CUFACE_DISPATCH(x, cpu::l2norm_forward(ctx, x, y, norms), cuda::l2norm_forward(ctx, x, y, norms));
}

// dx = (dy - y <y, dy>) / n per row, y = x / n; with `accumulate` adds into dx instead (dx must not
// alias dy then). dx may alias dy when not accumulating.
inline void l2norm_backward(Context& ctx, const Tensor& x, const Tensor& norms, const Tensor& dy, Tensor& dx,
                            bool accumulate) {
  check_l2norm(x, norms, dy, "l2norm_backward");
  check_l2norm(x, norms, dx, "l2norm_backward");
  CUFACE_DISPATCH(x, cpu::l2norm_backward(ctx, x, norms, dy, dx, accumulate),
                  cuda::l2norm_backward(ctx, x, norms, dy, dx, accumulate));
}

}  // namespace cuface
