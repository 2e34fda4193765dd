// Element-wise kernels over whole tensors (any shape; f32 unless noted). y and x may alias.
//   fill:  y = value                 copy:  y = x (any dtype, same numel)
//   axpy:  y = alpha * x + y         scale: y = alpha * y
//   add:   y = a + b                 (also bf16 on CUDA: summed in f32, rounded once)
//   cast:  y = x converted between f32, bf16 and f16 (round to nearest even); cast_to allocates y
#pragma once
#include "kernels/dispatch.h"

namespace cuface {

namespace cpu {
void fill(Context& ctx, Tensor& y, float value);
void copy(Context& ctx, const Tensor& x, Tensor& y);
void axpy(Context& ctx, float alpha, const Tensor& x, Tensor& y);
void scale(Context& ctx, float alpha, Tensor& y);
void add(Context& ctx, const Tensor& a, const Tensor& b, Tensor& y);
void cast(Context& ctx, const Tensor& x, Tensor& y);
}  // namespace cpu

namespace cuda {
void fill(Context& ctx, Tensor& y, float value);
void copy(Context& ctx, const Tensor& x, Tensor& y);
void axpy(Context& ctx, float alpha, const Tensor& x, Tensor& y);
void scale(Context& ctx, float alpha, Tensor& y);
void add(Context& ctx, const Tensor& a, const Tensor& b, Tensor& y);
void cast(Context& ctx, const Tensor& x, Tensor& y);
}  // namespace cuda

void check_elementwise(const Tensor& x, const Tensor& y, const char* what);

inline void fill(Context& ctx, Tensor& y, float value) {
  CUFACE_DISPATCH(y, cpu::fill(ctx, y, value), cuda::fill(ctx, y, value));
}
inline void copy(Context& ctx, const Tensor& x, Tensor& y) {
  check_elementwise(x, y, "copy");
  CUFACE_DISPATCH(y, cpu::copy(ctx, x, y), cuda::copy(ctx, x, y));
}
inline void axpy(Context& ctx, float alpha, const Tensor& x, Tensor& y) {
  check_elementwise(x, y, "axpy");
  CUFACE_DISPATCH(y, cpu::axpy(ctx, alpha, x, y), cuda::axpy(ctx, alpha, x, y));
}
inline void scale(Context& ctx, float alpha, Tensor& y) {
  CUFACE_DISPATCH(y, cpu::scale(ctx, alpha, y), cuda::scale(ctx, alpha, y));
}
inline void add(Context& ctx, const Tensor& a, const Tensor& b, Tensor& y) {
  check_elementwise(a, y, "add");
  check_elementwise(b, y, "add");
  CUFACE_DISPATCH(y, cpu::add(ctx, a, b, y), cuda::add(ctx, a, b, y));
}
inline void cast(Context& ctx, const Tensor& x, Tensor& y) {
  CUFACE_CHECK(x.numel() == y.numel() && x.device() == y.device(),
               "cast: " + x.str() + " and " + y.str() + " differ in size or device");
  CUFACE_DISPATCH(y, cpu::cast(ctx, x, y), cuda::cast(ctx, x, y));
}
// x in `dtype`: x itself when it already is, else a converted copy on x's device.
inline Tensor cast_to(Context& ctx, const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  Tensor y = Tensor::empty(x.shape(), dtype, x.device());
  cast(ctx, x, y);
  return y;
}

}  // namespace cuface
