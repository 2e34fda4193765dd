// GEMM: C = alpha * op(A) * op(B) + beta * C, row-major, op(X) = X or X^T.
//   A: [m, k] (or [k, m] with trans_a), B: [k, n] (or [n, k] with trans_b), C: [m, n].
// CPU: a cache-blocked, multi-threaded SGEMM written here (kernels/cpu/gemm.cpp).
// CUDA: cuBLAS; the context's precision picks fp32, TF32 tensor cores, or bf16 inputs (A and B given
// as bf16 tensors, or converted) with fp32 accumulation.
#pragma once
#include "kernels/dispatch.h"

namespace cuface {

// Raw row-major SGEMM on host memory, with leading dimensions: what cpu::gemm runs, and what the CPU
// convolution calls directly on its column slabs. lda, ldb, ldc are the stored row lengths
// (>= the columns of A, B, C as stored). beta == 0 overwrites C without reading it. Uses the OpenMP
// threads (omp_get_max_threads) when the product is large enough; called inside a parallel region
// (e.g. one GEMM per image), it runs on the calling thread alone.
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// An A operand [m, k] that is never stored as a matrix ("implicit GEMM"): row i is `runs` runs of
// `run_length` contiguous floats, run r starting at rows[i] + r * run_stride (k = runs * run_length).
// A convolution's column matrix is one, over a zero-padded NHWC input: rows[i] points at the top-left
// tap of output pixel i, a run is one kernel row (KW * C floats, contiguous in NHWC) and run_stride
// is one input row (kernels/cpu/conv.cpp).
struct GatheredRows {
  const float* const* rows;
  int64_t runs, run_length, run_stride;
};

// C[m, n] = alpha * A * op(B) + beta * C for gathered rows A: sgemm without writing A first. The
// micro-kernel reads the rows where they lie (packing them only when their spacing would make them
// evict each other from L1), which pays most in thin products: n of 64 or 128.
void sgemm_gathered(bool trans_b, int64_t m, int64_t n, float alpha, const GatheredRows& a, const float* b,
                    int64_t ldb, float beta, float* c, int64_t ldc);

namespace cpu {
void gemm(Context& ctx, bool trans_a, bool trans_b, float alpha, const Tensor& a, const Tensor& b, float beta,
          Tensor& c);
}  // namespace cpu

namespace cuda {
void gemm(Context& ctx, bool trans_a, bool trans_b, float alpha, const Tensor& a, const Tensor& b, float beta,
          Tensor& c);
}  // namespace cuda

// Shape checks shared by both backends; returns {m, n, k}.
struct GemmDims {
  int64_t m, n, k;
};
GemmDims check_gemm(bool trans_a, bool trans_b, const Tensor& a, const Tensor& b, const Tensor& c);

inline void gemm(Context& ctx, bool trans_a, bool trans_b, float alpha, const Tensor& a, const Tensor& b, float beta,
                 Tensor& c) {
  check_gemm(trans_a, trans_b, a, b, c);
  CUFACE_DISPATCH(c, cpu::gemm(ctx, trans_a, trans_b, alpha, a, b, beta, c),
                  cuda::gemm(ctx, trans_a, trans_b, alpha, a, b, beta, c));
}

}  // namespace cuface
