#include "kernels/gemm.h"

namespace cuface {

GemmDims check_gemm(bool trans_a, bool trans_b, const Tensor& a, const Tensor& b, const Tensor& c, bool batched) {
  const std::string what = batched ? "gemm_batched" : "gemm";
  CUFACE_CHECK(a.defined() && b.defined() && c.defined(), what + ": an operand is an undefined tensor");
  const std::string operands = " (A " + a.str() + (trans_a ? " transposed" : "") + ", B " + b.str() +
                               (trans_b ? " transposed" : "") + ", C " + c.str() + ")";
  const int rank = batched ? 3 : 2;
  CUFACE_CHECK(a.rank() == rank && b.rank() == rank && c.rank() == rank,
               what + ": expects rank-" + std::to_string(rank) + " operands" + operands);
  CUFACE_CHECK(a.device() == c.device() && b.device() == c.device(), what + ": operands on different devices" + operands);
  auto float_like = [](const Tensor& t) { return t.dtype() == DType::F32 || t.dtype() == DType::BF16; };
  if (c.is_cuda()) {
    CUFACE_CHECK(float_like(a) && float_like(b) && float_like(c), what + ": CUDA operands must be f32 or bf16" + operands);
  } else {
    CUFACE_CHECK(a.dtype() == DType::F32 && b.dtype() == DType::F32 && c.dtype() == DType::F32,
                 what + ": CPU operands must be f32" + operands);
  }

  const int row = batched ? 1 : 0, col = row + 1;  // axes of each matrix
  GemmDims d{};
  d.batch = batched ? c.size(0) : 1;
  d.m = trans_a ? a.size(col) : a.size(row);
  d.k = trans_a ? a.size(row) : a.size(col);
  const int64_t k_of_b = trans_b ? b.size(col) : b.size(row);
  d.n = trans_b ? b.size(row) : b.size(col);
  CUFACE_CHECK(d.k == k_of_b, what + ": inner dimensions differ, op(A) has " + std::to_string(d.k) +
                                  " columns and op(B) " + std::to_string(k_of_b) + " rows" + operands);
  CUFACE_CHECK(c.size(row) == d.m && c.size(col) == d.n,
               what + ": C must be [" + std::to_string(d.m) + ", " + std::to_string(d.n) + "]" + operands);
  CUFACE_CHECK(!batched || (a.size(0) == d.batch && b.size(0) == d.batch), what + ": batch sizes differ" + operands);
  return d;
}

}  // namespace cuface
