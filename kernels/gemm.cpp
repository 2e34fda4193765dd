#include "kernels/gemm.h"

namespace cuface {

GemmDims check_gemm(bool trans_a, bool trans_b, const Tensor& a, const Tensor& b, const Tensor& c) {
  const std::string what = "gemm";
  CUFACE_CHECK(a.defined() && b.defined() && c.defined(), what + ": an operand is an undefined tensor");
  const std::string operands = " (A " + a.str() + (trans_a ? " transposed" : "") + ", B " + b.str() +
                               (trans_b ? " transposed" : "") + ", C " + c.str() + ")";
  CUFACE_CHECK(a.rank() == 2 && b.rank() == 2 && c.rank() == 2, what + ": expects rank-2 operands" + operands);
  CUFACE_CHECK(a.device() == c.device() && b.device() == c.device(), what + ": operands on different devices" + operands);
  auto float_like = [](const Tensor& t) { return t.dtype() == DType::F32 || t.dtype() == DType::BF16; };
  if (c.is_cuda()) {
    CUFACE_CHECK(float_like(a) && float_like(b) && float_like(c), what + ": CUDA operands must be f32 or bf16" + operands);
  } else {
    CUFACE_CHECK(a.dtype() == DType::F32 && b.dtype() == DType::F32 && c.dtype() == DType::F32,
                 what + ": CPU operands must be f32" + operands);
  }

  GemmDims d{};
  d.m = trans_a ? a.size(1) : a.size(0);
  d.k = trans_a ? a.size(0) : a.size(1);
  const int64_t k_of_b = trans_b ? b.size(1) : b.size(0);
  d.n = trans_b ? b.size(0) : b.size(1);
  CUFACE_CHECK(d.k == k_of_b, what + ": inner dimensions differ, op(A) has " + std::to_string(d.k) +
                                  " columns and op(B) " + std::to_string(k_of_b) + " rows" + operands);
  CUFACE_CHECK(c.size(0) == d.m && c.size(1) == d.n,
               what + ": C must be [" + std::to_string(d.m) + ", " + std::to_string(d.n) + "]" + operands);
  return d;
}

}  // namespace cuface
