// Stand-ins for the cuBLAS and cuBLASLt calls cuface makes, written from the cuBLAS documentation.
//
// cublasGemmEx computes C = alpha op(A) op(B) + beta C on column-major matrices: element (i, j) of a
// matrix with leading dimension ld is at [i + j * ld], op(X) is X or its transpose, op(A) is m x k,
// op(B) is k x n and C is m x n. Arguments are checked at the call as cuBLAS checks them (the
// documented CUBLAS_STATUS_INVALID_VALUE and NOT_SUPPORTED cases); pointers must be device memory.
// The arithmetic is queued on the handle's stream. Numbers follow the compute type: f32 products
// summed in f32 (k in order); CUBLAS_COMPUTE_32F_FAST_TF32 first rounds the f32 inputs to TF32 as
// tensor cores do; bf16 inputs are read exactly and a bf16 C is rounded to nearest even once, after
// alpha and beta are applied. With beta == 0, C is not read (it may hold NaN), as documented.
#include <cublasLt.h>
#include <cublas_v2.h>

#include <algorithm>
#include <string>
#include <vector>

#include "library_support.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
};

struct cublasLtContext {};

namespace cuda_emulator {
namespace {

LiveHandles<cublasHandle_t>& live_handles() {
  static LiveHandles<cublasHandle_t> handles;
  return handles;
}

LiveHandles<cublasLtHandle_t>& live_lt_handles() {
  static LiveHandles<cublasLtHandle_t> handles;
  return handles;
}

size_t element_bytes(cudaDataType type) { return type == CUDA_R_16BF ? 2 : 4; }

// The combinations cublasGemmEx's documentation lists for real matrices (A and B of one type).
bool documented_combination(cublasComputeType_t compute, cudaDataType ab, cudaDataType c) {
  switch (compute) {
    case CUBLAS_COMPUTE_16F:
    case CUBLAS_COMPUTE_16F_PEDANTIC: return ab == CUDA_R_16F && c == CUDA_R_16F;
    case CUBLAS_COMPUTE_32I:
    case CUBLAS_COMPUTE_32I_PEDANTIC: return ab == CUDA_R_8I && c == CUDA_R_32I;
    case CUBLAS_COMPUTE_32F:
    case CUBLAS_COMPUTE_32F_PEDANTIC:
      return (ab == CUDA_R_16BF && (c == CUDA_R_16BF || c == CUDA_R_32F)) ||
             (ab == CUDA_R_16F && (c == CUDA_R_16F || c == CUDA_R_32F)) || (ab == CUDA_R_8I && c == CUDA_R_32F) ||
             (ab == CUDA_R_32F && c == CUDA_R_32F);
    case CUBLAS_COMPUTE_32F_FAST_16F:
    case CUBLAS_COMPUTE_32F_FAST_16BF:
    case CUBLAS_COMPUTE_32F_FAST_TF32: return ab == CUDA_R_32F && c == CUDA_R_32F;
    case CUBLAS_COMPUTE_64F:
    case CUBLAS_COMPUTE_64F_PEDANTIC: return ab == CUDA_R_64F && c == CUDA_R_64F;
  }
  return false;
}

// The documented combinations this stand-in computes: the ones cuface uses.
bool emulated_combination(cublasComputeType_t compute, cudaDataType ab, cudaDataType c) {
  if (compute == CUBLAS_COMPUTE_32F_FAST_TF32) return true;  // f32 in, f32 out (documented_combination holds)
  if (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_PEDANTIC) return false;
  return ab == CUDA_R_32F || (ab == CUDA_R_16BF && (c == CUDA_R_16BF || c == CUDA_R_32F));
}

const char* type_name(cudaDataType type) {
  switch (type) {
    case CUDA_R_32F: return "CUDA_R_32F";
    case CUDA_R_64F: return "CUDA_R_64F";
    case CUDA_R_16F: return "CUDA_R_16F";
    case CUDA_R_8I: return "CUDA_R_8I";
    case CUDA_R_8U: return "CUDA_R_8U";
    case CUDA_R_32I: return "CUDA_R_32I";
    case CUDA_R_16BF: return "CUDA_R_16BF";
  }
  return "an unknown cudaDataType";
}

// A stored matrix as cublasGemmEx describes it; op() of it is rows x cols.
struct Operand {
  const void* data;
  cudaDataType type;
  int ld;
  bool transposed;
  int rows, cols;

  // The stored matrix is rows x cols, or cols x rows when transposed; its last column may be short.
  size_t extent_bytes() const {
    const int stored_rows = transposed ? cols : rows, stored_cols = transposed ? rows : cols;
    if (stored_rows == 0 || stored_cols == 0) return 0;
    return (size_t(stored_cols - 1) * size_t(ld) + size_t(stored_rows)) * element_bytes(type);
  }
};

// C is computed in tiles of kTileRows x kTileColumns, each summed over k in slices of kSliceDepth
// (in order, so every element is still the sum over l = 0, 1, ... k - 1): the packed pieces of the
// operands stay small whatever the matrices' sizes (cuface multiplies matrices of over 2^31 elements).
constexpr int kTileRows = 256, kTileColumns = 64, kSliceDepth = 256;

// op(X)[row, column] as f32, TF32-rounded on request.
float element(const Operand& x, int row, int column, bool tf32) {
  const size_t at = x.transposed ? size_t(column) + size_t(row) * size_t(x.ld)
                                 : size_t(row) + size_t(column) * size_t(x.ld);
  const float value = x.type == CUDA_R_16BF ? bf16_to_float(static_cast<const uint16_t*>(x.data)[at])
                                            : static_cast<const float*>(x.data)[at];
  return tf32 ? round_to_tf32(value) : value;
}

// The block of op(X) at [row0, column0] of rows x columns, packed column-major into `packed`.
void pack(const Operand& x, int row0, int column0, int rows, int columns, bool tf32, std::vector<float>& packed) {
  for (int j = 0; j < columns; ++j)
    for (int i = 0; i < rows; ++i) packed[size_t(i) + size_t(j) * rows] = element(x, row0 + i, column0 + j, tf32);
}

// C = alpha op(A) op(B) + beta C. Within a tile each column of C is built as a sum of op(A)'s columns
// scaled by op(B)'s entries: the inner loop runs down contiguous memory.
void gemm(const Operand& a, const Operand& b, int m, int n, int k, float alpha, float beta, void* c,
          cudaDataType c_type, int ldc, bool tf32) {
  std::vector<float> tile(size_t(kTileRows) * kTileColumns), a_slice(size_t(kTileRows) * kSliceDepth),
      b_slice(size_t(kSliceDepth) * kTileColumns);
  for (int i0 = 0; i0 < m; i0 += kTileRows) {
    const int rows = std::min(kTileRows, m - i0);
    for (int j0 = 0; j0 < n; j0 += kTileColumns) {
      const int columns = std::min(kTileColumns, n - j0);
      std::fill(tile.begin(), tile.end(), 0.0f);
      for (int l0 = 0; l0 < k; l0 += kSliceDepth) {
        const int depth = std::min(kSliceDepth, k - l0);
        pack(a, i0, l0, rows, depth, tf32, a_slice);
        pack(b, l0, j0, depth, columns, tf32, b_slice);
        for (int j = 0; j < columns; ++j) {
          float* sums = &tile[size_t(j) * rows];
          for (int l = 0; l < depth; ++l) {
            const float scale = b_slice[size_t(l) + size_t(j) * depth];
            const float* a_column = &a_slice[size_t(l) * rows];
            for (int i = 0; i < rows; ++i) sums[i] += a_column[i] * scale;
          }
        }
      }
      for (int j = 0; j < columns; ++j)
        for (int i = 0; i < rows; ++i) {
          const size_t at = size_t(i0 + i) + size_t(j0 + j) * size_t(ldc);
          const float product = alpha * tile[size_t(i) + size_t(j) * rows];
          if (c_type == CUDA_R_16BF) {
            uint16_t& target = static_cast<uint16_t*>(c)[at];
            target = float_to_bf16(product + (beta == 0.0f ? 0.0f : beta * bf16_to_float(target)));
          } else {
            float& target = static_cast<float*>(c)[at];
            target = product + (beta == 0.0f ? 0.0f : beta * target);
          }
        }
    }
  }
}

}  // namespace
}  // namespace cuda_emulator

using namespace cuda_emulator;

extern "C" cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new cublasContext;
  live_handles().add(*handle);
  return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!live_handles().remove(handle)) fail("cublasDestroy: the handle was never created or is already destroyed");
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t streamId) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  live_handles().require(handle, "cublasSetStream");
  handle->stream = streamId;
  return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                       int m, int n, int k, const void* alpha, const void* A, cudaDataType Atype,
                                       int lda, const void* B, cudaDataType Btype, int ldb, const void* beta, void* C,
                                       cudaDataType Ctype, int ldc, cublasComputeType_t computeType,
                                       cublasGemmAlgo_t algo) {
  // For real matrices CUBLAS_OP_C is the transpose.
  const std::string call = std::string("cublasGemmEx(") + (transa == CUBLAS_OP_N ? "N" : "T") + ", " +
                           (transb == CUBLAS_OP_N ? "N" : "T") + ", m=" + std::to_string(m) +
                           ", n=" + std::to_string(n) + ", k=" + std::to_string(k) + ")";
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  live_handles().require(handle, call);
  const auto valid_op = [](cublasOperation_t op) { return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C; };
  if (m < 0 || n < 0 || k < 0 || !valid_op(transa) || !valid_op(transb)) return CUBLAS_STATUS_INVALID_VALUE;
  // Leading dimensions: at least the stored rows (cuBLAS's documented minimums).
  if (lda < std::max(1, transa == CUBLAS_OP_N ? m : k)) return CUBLAS_STATUS_INVALID_VALUE;
  if (ldb < std::max(1, transb == CUBLAS_OP_N ? k : n)) return CUBLAS_STATUS_INVALID_VALUE;
  if (ldc < std::max(1, m)) return CUBLAS_STATUS_INVALID_VALUE;
  if (alpha == nullptr || beta == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  if (Atype != Btype || !documented_combination(computeType, Atype, Ctype)) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (algo != CUBLAS_GEMM_DEFAULT && algo != CUBLAS_GEMM_DEFAULT_TENSOR_OP) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (!emulated_combination(computeType, Atype, Ctype))
    fail(call + ": A/B " + type_name(Atype) + " with C " + type_name(Ctype) +
         " is a valid cuBLAS combination the emulator does not implement");
  require_host_scalar(call, "alpha", alpha);
  require_host_scalar(call, "beta", beta);
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;

  const Operand a{A, Atype, lda, transa != CUBLAS_OP_N, m, k};
  const Operand b{B, Btype, ldb, transb != CUBLAS_OP_N, k, n};
  const Operand c{C, Ctype, ldc, false, m, n};
  require_device_memory(call, "A", A, a.extent_bytes());
  require_device_memory(call, "B", B, b.extent_bytes());
  require_device_memory(call, "C", C, c.extent_bytes());
  if (ranges_overlap(C, c.extent_bytes(), A, a.extent_bytes()) ||
      ranges_overlap(C, c.extent_bytes(), B, b.extent_bytes()))
    fail(call + ": C overlaps A or B; cuBLAS does not compute a GEMM in place");

  const float alpha_value = *static_cast<const float*>(alpha);
  const float beta_value = *static_cast<const float*>(beta);
  const bool tf32 = computeType == CUBLAS_COMPUTE_32F_FAST_TF32;
  enqueue(handle->stream, call, [=] { gemm(a, b, m, n, k, alpha_value, beta_value, C, Ctype, ldc, tf32); });
  return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasLtCreate(cublasLtHandle_t* lightHandle) {
  if (lightHandle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *lightHandle = new cublasLtContext;
  live_lt_handles().add(*lightHandle);
  return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasLtDestroy(cublasLtHandle_t lightHandle) {
  if (lightHandle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!live_lt_handles().remove(lightHandle))
    fail("cublasLtDestroy: the handle was never created or is already destroyed");
  delete lightHandle;
  return CUBLAS_STATUS_SUCCESS;
}
