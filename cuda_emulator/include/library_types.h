// Stand-in for CUDA's library_types.h under the CUDA emulator: the element types cuBLAS names in
// cublasGemmEx. Values are NVIDIA's; only the real (non-complex) types are declared.
#pragma once

typedef enum cudaDataType_t {
  CUDA_R_32F = 0,
  CUDA_R_64F = 1,
  CUDA_R_16F = 2,
  CUDA_R_8I = 3,
  CUDA_R_8U = 8,
  CUDA_R_32I = 10,
  CUDA_R_16BF = 14,
} cudaDataType;
