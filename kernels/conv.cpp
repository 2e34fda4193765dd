#include "kernels/conv.h"

namespace cuface {

Shape conv2d_output_shape(const Shape& x, const Shape& w, const Conv2dGeometry& g) {
  CUFACE_CHECK(x.rank == 4 && w.rank == 4,
               "conv2d: expects x [N, H, W, C] and w [O, KH, KW, C], got x " + x.str() + " and w " + w.str());
  CUFACE_CHECK(x[3] == w[3], "conv2d: x has " + std::to_string(x[3]) + " channels but w " + w.str() + " expects " +
                                 std::to_string(w[3]));
  CUFACE_CHECK(g.stride_h > 0 && g.stride_w > 0 && g.pad_h >= 0 && g.pad_w >= 0,
               "conv2d: strides must be positive and paddings non-negative");
  const int64_t padded_h = x[1] + 2 * g.pad_h, padded_w = x[2] + 2 * g.pad_w;
  CUFACE_CHECK(w[1] > 0 && w[2] > 0 && w[1] <= padded_h && w[2] <= padded_w,
               "conv2d: kernel " + w.str() + " does not fit the padded input " + x.str());
  return Shape{x[0], (padded_h - w[1]) / g.stride_h + 1, (padded_w - w[2]) / g.stride_w + 1, w[0]};
}

void check_conv2d(const Tensor& x, const Tensor& w, const Tensor& y, const Conv2dGeometry& geometry, const char* what,
                  bool w_is_gradient) {
  CUFACE_CHECK(x.defined() && w.defined() && y.defined(), std::string(what) + ": an operand is an undefined tensor");
  check_shape(y, conv2d_output_shape(x.shape(), w.shape(), geometry), what);
  // Built only when a check fails.
  const auto operands = [&] { return std::string(" (") + x.str() + ", " + w.str() + ", " + y.str() + ")"; };
  CUFACE_CHECK(x.device() == w.device() && x.device() == y.device(),
               std::string(what) + ": operands on different devices" + operands());
  CUFACE_CHECK(x.dtype() == y.dtype(),
               std::string(what) + ": activations and their gradients must share a dtype" + operands());
  if (w_is_gradient)
    CUFACE_CHECK(w.dtype() == DType::F32,
                 std::string(what) + ": the filter gradient must be an f32 accumulator" + operands());
  else
    CUFACE_CHECK(w.dtype() == x.dtype(),
                 std::string(what) + ": the filter must have the activations' dtype" + operands());
  if (x.is_cuda())
    CUFACE_CHECK(x.dtype() == DType::F32 || x.dtype() == DType::BF16,
                 std::string(what) + ": CUDA tensors must be f32 or bf16" + operands());
  else
    CUFACE_CHECK(x.dtype() == DType::F32, std::string(what) + ": CPU tensors must be f32" + operands());
}

// Both conversions move axis 1 to the end or back; done on the host (checkpoint I/O, not a hot path).
static Tensor permute_weight(const Tensor& w, bool to_ohwi) {
  CUFACE_CHECK(w.rank() == 4 && w.dtype() == DType::F32,
               "convolution weight layout conversion expects a 4-d f32 "
               "tensor, got " +
                   w.str());
  const Tensor host = w.device() == Device::CPU ? w : w.to(Device::CPU);
  const int64_t o_count = w.size(0);
  // OIHW [O, I, KH, KW] <-> OHWI [O, KH, KW, I]: name the three inner extents in OIHW terms.
  const int64_t i_count = to_ohwi ? w.size(1) : w.size(3);
  const int64_t kh_count = to_ohwi ? w.size(2) : w.size(1);
  const int64_t kw_count = to_ohwi ? w.size(3) : w.size(2);
  Tensor out = Tensor::empty(to_ohwi ? Shape{o_count, kh_count, kw_count, i_count}
                                     : Shape{o_count, i_count, kh_count, kw_count});
  const float* src = host.data<float>();
  float* dst = out.data<float>();
  for (int64_t o = 0; o < o_count; ++o)
    for (int64_t i = 0; i < i_count; ++i)
      for (int64_t kh = 0; kh < kh_count; ++kh)
        for (int64_t kw = 0; kw < kw_count; ++kw) {
          const int64_t oihw = ((o * i_count + i) * kh_count + kh) * kw_count + kw;
          const int64_t ohwi = ((o * kh_count + kh) * kw_count + kw) * i_count + i;
          if (to_ohwi)
            dst[ohwi] = src[oihw];
          else
            dst[oihw] = src[ohwi];
        }
  return w.device() == Device::CPU ? out : out.to(w.device());
}

Tensor oihw_to_ohwi(const Tensor& oihw) { return permute_weight(oihw, true); }
Tensor ohwi_to_oihw(const Tensor& ohwi) { return permute_weight(ohwi, false); }

}  // namespace cuface
