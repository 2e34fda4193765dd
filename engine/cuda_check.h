// Checked CUDA, cuBLAS and cuDNN calls: a failure throws cuface::Error naming the call, file and line.
// Only CUDA-side code includes this header; layers and kernels' public headers never see CUDA types.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <string>

#include "engine/error.h"

namespace cuface {
const char* cublas_status_name(cublasStatus_t status);
}

#define CUDA_CHECK(call)                                                                          \
  do {                                                                                            \
    cudaError_t status_ = (call);                                                                 \
    if (status_ != cudaSuccess)                                                                   \
      ::cuface::throw_error(std::string(#call) + " failed: " + cudaGetErrorString(status_), __FILE__, \
                            __LINE__);                                                            \
  } while (0)

#define CUBLAS_CHECK(call)                                                                        \
  do {                                                                                            \
    cublasStatus_t status_ = (call);                                                              \
    if (status_ != CUBLAS_STATUS_SUCCESS)                                                         \
      ::cuface::throw_error(std::string(#call) + " failed: " + ::cuface::cublas_status_name(status_), \
                            __FILE__, __LINE__);                                                  \
  } while (0)

#define CUDNN_CHECK(call)                                                                         \
  do {                                                                                            \
    cudnnStatus_t status_ = (call);                                                               \
    if (status_ != CUDNN_STATUS_SUCCESS)                                                          \
      ::cuface::throw_error(std::string(#call) + " failed: " + cudnnGetErrorString(status_), __FILE__, \
                            __LINE__);                                                            \
  } while (0)

// After a kernel launch: reports a bad launch configuration at the launch site.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
