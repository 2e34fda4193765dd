#include "kernels/pool.h"

namespace cuface {

Shape max_pool2d_output_shape(const Shape& x, const Pool2dGeometry& g) {
  CUFACE_CHECK(x.rank == 4, "max_pool2d: expects x [N, H, W, C], got " + x.str());
  CUFACE_CHECK(g.kernel > 0 && g.stride > 0 && g.padding >= 0 && g.padding <= g.kernel / 2,
               "max_pool2d: needs kernel > 0, stride > 0 and 0 <= padding <= kernel / 2 (kernel " +
                   std::to_string(g.kernel) + ", stride " + std::to_string(g.stride) + ", padding " +
                   std::to_string(g.padding) + ")");
  const int64_t padded_h = x[1] + 2 * g.padding, padded_w = x[2] + 2 * g.padding;
  CUFACE_CHECK(g.kernel <= padded_h && g.kernel <= padded_w,
               "max_pool2d: kernel " + std::to_string(g.kernel) + " is larger than the padded input " + x.str());
  return Shape{x[0], (padded_h - g.kernel) / g.stride + 1, (padded_w - g.kernel) / g.stride + 1, x[3]};
}

// Activations: f32, or bf16 on CUDA; x and y share device and dtype.
static void check_activations(const Tensor& x, const Tensor& y, const char* what) {
  CUFACE_CHECK(x.defined() && y.defined(), std::string(what) + ": an operand is an undefined tensor");
  // Built only when a check fails.
  const auto operands = [&] { return std::string(" (") + x.str() + ", " + y.str() + ")"; };
  CUFACE_CHECK(x.device() == y.device() && x.dtype() == y.dtype(),
               std::string(what) + ": operands differ in device or dtype" + operands());
  if (x.is_cuda())
    CUFACE_CHECK(x.dtype() == DType::F32 || x.dtype() == DType::BF16,
                 std::string(what) + ": CUDA tensors must be f32 or bf16" + operands());
  else
    CUFACE_CHECK(x.dtype() == DType::F32, std::string(what) + ": CPU tensors must be f32" + operands());
}

void check_max_pool2d(const Tensor& x, const Tensor& y, const Tensor& argmax, const Pool2dGeometry& geometry,
                      const char* what) {
  check_activations(x, y, what);
  check_shape(y, max_pool2d_output_shape(x.shape(), geometry), what);
  CUFACE_CHECK(argmax.defined() && argmax.dtype() == DType::I32 && argmax.device() == y.device(),
               std::string(what) + ": argmax must be an i32 tensor on the device of y, got " +
                   (argmax.defined() ? argmax.str() : "none"));
  check_shape(argmax, y.shape(), what);
  CUFACE_CHECK(x.size(1) * x.size(2) <= INT32_MAX,
               std::string(what) + ": the image is too large for i32 argmax indices");
}

void check_global_avg_pool(const Tensor& x, const Tensor& y, const char* what) {
  check_activations(x, y, what);
  CUFACE_CHECK(x.rank() == 4 && x.size(1) * x.size(2) > 0,
               std::string(what) + ": expects x [N, H, W, C] with H, W > 0, got " + x.str());
  check_shape(y, Shape{x.size(0), x.size(3)}, what);
}

}  // namespace cuface
