// cuBLAS, loaded when the first CUDA Context is made instead of when the program starts.
//
// Linking libcublas makes every process of a CUDA build pay libcublasLt's start-up (0.4 s and ~200 MB
// of touched pages on a 2-core machine) before main, also a CPU-only `cuface train`, `cuface --help`
// and each of the test processes, on machines without a GPU too. cuDNN, NCCL and the CUDA runtime
// start in milliseconds and stay linked. Under the emulator the table points at its cuBLAS directly.
#pragma once
#include <cublas_v2.h>

namespace cuface {

// The cuBLAS entry points cuface calls, resolved by name from the shared library.
struct CublasLibrary {
  decltype(&cublasCreate) create = nullptr;
  decltype(&cublasDestroy) destroy = nullptr;
  decltype(&cublasSetStream) set_stream = nullptr;
  // cublasGemmEx is overloaded in C++ (a wrapper takes a cudaDataType compute type): this is the C one.
  using GemmEx = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int m, int n, int k,
                                    const void* alpha, const void* a, cudaDataType a_type, int lda, const void* b,
                                    cudaDataType b_type, int ldb, const void* beta, void* c, cudaDataType c_type,
                                    int ldc, cublasComputeType_t compute, cublasGemmAlgo_t algo);
  GemmEx gemm_ex = nullptr;
};

// Loads the library on the first call (thread-safe); throws cuface::Error naming the library and the
// missing symbol when it cannot be loaded.
const CublasLibrary& cublas_library();

}  // namespace cuface
