// Defects in code that calls the CUDA backend, as the emulator shows them: a transposed cuBLAS
// operand (the product changes, which the GPU-vs-CPU tests compare), and host code reading a
// device tensor.
#include <cublas_v2.h>
#include <gtest/gtest.h>

#include <vector>

#include "engine/tensor.h"

namespace {

// C (2 x 3) = A (2 x 4) B (4 x 3), row-major, through cuBLAS's column-major GEMM as kernels/cuda/gemm.cu
// calls it (C^T = B^T A^T: operands swapped); `transpose_b` plants a wrong operation on B.
std::vector<float> row_major_product(const std::vector<float>& a, const std::vector<float>& b, bool transpose_b) {
  const int m = 2, n = 3, k = 4;
  float *da = nullptr, *db = nullptr, *dc = nullptr;
  cudaMalloc(&da, a.size() * 4);
  cudaMalloc(&db, b.size() * 4);
  cudaMalloc(&dc, size_t(m * n) * 4);
  cudaMemcpy(da, a.data(), a.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(db, b.data(), b.size() * 4, cudaMemcpyHostToDevice);
  cublasHandle_t handle = nullptr;
  EXPECT_EQ(cublasCreate(&handle), CUBLAS_STATUS_SUCCESS);
  const float alpha = 1.0f, beta = 0.0f;
  // With B transposed its leading dimension must be k to stay a valid call: a 3 x 4 reading of B.
  EXPECT_EQ(cublasGemmEx(handle, transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &alpha, db, CUDA_R_32F,
                         transpose_b ? k : n, da, CUDA_R_32F, k, &beta, dc, CUDA_R_32F, n, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS);
  std::vector<float> c(size_t(m * n));
  cudaMemcpy(c.data(), dc, c.size() * 4, cudaMemcpyDeviceToHost);
  cublasDestroy(handle);
  return c;
}

TEST(EmulatorDefects, TransposedGemmOperandGivesAnotherProduct) {
  const std::vector<float> a = {1, 2, 3, 4, -1, 0.5f, 2, -3};
  const std::vector<float> b = {1, 0, 2, -1, 3, 1, 0.5f, 2, -2, 4, 1, 0};
  std::vector<double> reference(6, 0.0);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int p = 0; p < 4; ++p) reference[size_t(i * 3 + j)] += double(a[size_t(i * 4 + p)]) * b[size_t(p * 3 + j)];
  const std::vector<float> right = row_major_product(a, b, false);
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(right[size_t(i)], reference[size_t(i)], 1e-5);
  const std::vector<float> wrong = row_major_product(a, b, true);
  double largest_difference = 0.0;
  for (int i = 0; i < 6; ++i) largest_difference = std::max(largest_difference, std::abs(wrong[size_t(i)] - reference[size_t(i)]));
  EXPECT_GT(largest_difference, 1.0) << "a transposed operand must change the product";
}

TEST(EmulatorDefects, HostReadOfADeviceTensor) {
  cuface::Tensor t = cuface::Tensor::zeros({4}, cuface::DType::F32, cuface::Device::CUDA);
  EXPECT_DEATH(
      {
        volatile float value = t.data<float>()[2];
        (void)value;
      },
      "host code read device memory without a copy");
}

}  // namespace
