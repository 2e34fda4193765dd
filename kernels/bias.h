// Per-channel bias over the last axis, shared by Linear ([N, F]) and Conv2d ([N, H, W, C]):
//   add_bias:             y[..., c] += bias[c]
//   accumulate_bias_grad: db[c] += sum over every leading position of dy[..., c]   (accumulates,
//                         like every parameter gradient)
// bias and db are f32 [C]; y and dy are f32, or bf16 on CUDA (summed in f32).
// The CUDA reduction is two-pass (per-block partial sums, then one fixed-order sum per channel), so
// the gradient is bitwise reproducible, unlike an atomicAdd reduction.
#pragma once
#include "kernels/dispatch.h"

namespace cuface {

namespace cpu {
void add_bias(Context& ctx, Tensor& y, const Tensor& bias);
void accumulate_bias_grad(Context& ctx, const Tensor& dy, Tensor& db);
}  // namespace cpu

namespace cuda {
void add_bias(Context& ctx, Tensor& y, const Tensor& bias);
void accumulate_bias_grad(Context& ctx, const Tensor& dy, Tensor& db);
}  // namespace cuda

// Checks that `bias` is an f32 vector matching the last axis of `activations` (same device, a
// supported dtype); `what` names the caller.
void check_bias(const Tensor& activations, const Tensor& bias, const char* what);

inline void add_bias(Context& ctx, Tensor& y, const Tensor& bias) {
  check_bias(y, bias, "add_bias");
  CUFACE_DISPATCH(y, cpu::add_bias(ctx, y, bias), cuda::add_bias(ctx, y, bias));
}

inline void accumulate_bias_grad(Context& ctx, const Tensor& dy, Tensor& db) {
  check_bias(dy, db, "accumulate_bias_grad");
  CUFACE_DISPATCH(dy, cpu::accumulate_bias_grad(ctx, dy, db), cuda::accumulate_bias_grad(ctx, dy, db));
}

}  // namespace cuface
