// The one place that knows there are two backends. A kernel family's header declares its CPU and
// CUDA implementations and a public function that picks one by the tensors' device:
//
//   inline void scale(Context& ctx, float alpha, Tensor& y) {
//     CUFACE_DISPATCH(y, cpu::scale(ctx, alpha, y), cuda::scale(ctx, alpha, y));
//   }
//
// Without the CUDA backend the CUDA branch is not compiled and a CUDA tensor is a clear error.
#pragma once
#include "engine/context.h"
#include "engine/tensor.h"

namespace cuface {
[[noreturn]] void throw_no_cuda_backend(const char* function);
}

#if CUFACE_HAS_CUDA
#define CUFACE_DISPATCH(tensor, cpu_call, cuda_call) \
  do {                                               \
    if ((tensor).is_cuda()) {                        \
      cuda_call;                                     \
    } else {                                         \
      cpu_call;                                      \
    }                                                \
  } while (0)
#else
#define CUFACE_DISPATCH(tensor, cpu_call, cuda_call)                  \
  do {                                                                \
    if ((tensor).is_cuda()) ::cuface::throw_no_cuda_backend(__func__); \
    cpu_call;                                                         \
  } while (0)
#endif
