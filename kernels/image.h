// Image input kernels.
//   normalise_u8:  y = (float(x) - mean) * scale,  x u8, y f32 or bf16 of the same shape (NHWC).
// The default (x - 127.5) / 128 maps 0..255 onto [-0.996, 0.996] exactly in float; the original
// project used (x - 127.5) / 127.5 (scale 1 / 127.5), which NormaliseOptions (face/loader/upload.h)
// can select; the trainer and the embedder both use the default.
#pragma once
#include "kernels/dispatch.h"

namespace cuface {

constexpr float kPixelMean = 127.5f;
constexpr float kPixelScale = 1.0f / 128.0f;
constexpr float kOriginalPixelScale = 1.0f / 127.5f;

namespace cpu {
void normalise_u8(Context& ctx, const Tensor& x, Tensor& y, float mean, float scale);
}
namespace cuda {
void normalise_u8(Context& ctx, const Tensor& x, Tensor& y, float mean, float scale);
}

inline void normalise_u8(Context& ctx, const Tensor& x, Tensor& y, float mean = kPixelMean, float scale = kPixelScale) {
  CUFACE_CHECK(x.dtype() == DType::U8 && (y.dtype() == DType::F32 || y.dtype() == DType::BF16),
               "normalise_u8: expected u8 input and f32/bf16 output, got " + x.str() + " and " + y.str());
  CUFACE_CHECK(x.numel() == y.numel(), "normalise_u8: " + x.str() + " and " + y.str() + " differ in size");
  check_same_device(x, y, "normalise_u8");
  CUFACE_DISPATCH(y, cpu::normalise_u8(ctx, x, y, mean, scale), cuda::normalise_u8(ctx, x, y, mean, scale));
}

}  // namespace cuface
