// CUDA GEMM: cuBLAS on the context's stream; the CPU twin is kernels/cpu/gemm.cpp.
//
// cuBLAS is column-major. A row-major [r, c] matrix is the same memory as a column-major [c, r] one,
// i.e. its transpose, so the row-major C = op(A) op(B) is computed as the column-major
// C^T = op(B)^T op(A)^T: swap the operands, swap m and n, keep each operand's transpose flag.
//
// Precision (ctx.precision()): fp32 computes exactly in fp32; tf32 lets tensor cores round the f32
// inputs to TF32; bf16 multiplies bf16 copies of A and B (f32 operands are converted into the
// context's workspace) with fp32 accumulation, writing C as f32 or bf16. bf16 operands are used as
// given under any precision.
#include <climits>

#include "engine/cublas_library.h"
#include "engine/cuda_context.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"

namespace cuface::cuda {

namespace {

cudaDataType_t cuda_type(DType dtype) { return dtype == DType::BF16 ? CUDA_R_16BF : CUDA_R_32F; }

int to_int(int64_t value, const char* what) {
  CUFACE_CHECK(value <= INT_MAX, std::string("gemm: ") + what + " = " + std::to_string(value) +
                                     " exceeds cuBLAS's 32-bit sizes");
  return int(value);
}

// The operands as cuBLAS will read them: in bf16 when the precision or any operand asks for it. A bf16
// C takes bf16 inputs too: cublasGemmEx has no f32 x f32 -> bf16 combination (NOT_SUPPORTED).
struct GemmOperands {
  const void* a;
  const void* b;
  cudaDataType_t input_type;
  cublasComputeType_t compute;
};

GemmOperands prepare_operands(Context& ctx, const Tensor& a, const Tensor& b, const Tensor& c) {
  const bool bf16_inputs = ctx.precision() == Precision::BF16 || a.dtype() == DType::BF16 ||
                           b.dtype() == DType::BF16 || c.dtype() == DType::BF16;
  if (!bf16_inputs) {
    const cublasComputeType_t compute =
        ctx.precision() == Precision::TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    return {a.raw(), b.raw(), CUDA_R_32F, compute};
  }
  // Convert the f32 operands into one workspace request: A's copy first, B's at a 256-byte boundary.
  auto converted_bytes = [](const Tensor& t) {
    return t.dtype() == DType::F32 ? (size_t(t.numel()) * sizeof(bf16) + 255) / 256 * 256 : 0;
  };
  char* workspace = static_cast<char*>(ctx.cuda().workspace_bytes(converted_bytes(a) + converted_bytes(b)));
  auto as_bf16 = [&](const Tensor& t, char* where) -> const void* {
    if (t.dtype() == DType::BF16) return t.raw();
    Tensor copy = Tensor::from_blob(where, t.shape(), DType::BF16, Device::CUDA);
    cuda::cast(ctx, t, copy);
    return where;
  };
  const void* a16 = as_bf16(a, workspace);
  const void* b16 = as_bf16(b, workspace + converted_bytes(a));
  return {a16, b16, CUDA_R_16BF, CUBLAS_COMPUTE_32F};
}

}  // namespace

void gemm(Context& ctx, bool trans_a, bool trans_b, float alpha, const Tensor& a, const Tensor& b, float beta,
          Tensor& c) {
  const GemmDims d = check_gemm(trans_a, trans_b, a, b, c);
  if (d.m == 0 || d.n == 0) return;
  if (d.k == 0) {  // no product: C = beta C, done here (cuBLAS documents k = 0 as valid, not its result)
    if (beta == 0.0f) {
      CUDA_CHECK(cudaMemsetAsync(c.raw(), 0, c.bytes(), cuda_stream(ctx)));  // 0 bits: +0 in f32 and bf16
    } else if (beta != 1.0f) {
      CUFACE_CHECK(c.dtype() == DType::F32, "gemm: k = 0 with beta " + std::to_string(beta) + " needs an f32 C");
      cuda::scale(ctx, beta, c);
    }
    return;
  }
  const GemmOperands op = prepare_operands(ctx, a, b, c);
  // Leading dimensions are the stored row lengths.
  const int lda = to_int(a.size(-1), "lda");
  const int ldb = to_int(b.size(-1), "ldb");
  const int ldc = to_int(d.n, "ldc");
  const int m = to_int(d.m, "m"), n = to_int(d.n, "n"), k = to_int(d.k, "k");
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  CUBLAS_CHECK(cublas_library().gemm_ex(ctx.cuda().cublas, op_b, op_a, n, m, k, &alpha, op.b, op.input_type, ldb,
                                        op.a, op.input_type, lda, &beta, c.raw(), cuda_type(c.dtype()), ldc,
                                        op.compute, CUBLAS_GEMM_DEFAULT));
}

}  // namespace cuface::cuda
