// Stand-in for cuBLASLt (cublasLt.h) under the CUDA emulator: cuface only creates and destroys the
// handle (no matmul goes through cuBLASLt yet).
#pragma once
#include <cublas_v2.h>

typedef struct cublasLtContext* cublasLtHandle_t;

#ifdef __cplusplus
extern "C" {
#endif

cublasStatus_t cublasLtCreate(cublasLtHandle_t* lightHandle);
cublasStatus_t cublasLtDestroy(cublasLtHandle_t lightHandle);

#ifdef __cplusplus
}
#endif
