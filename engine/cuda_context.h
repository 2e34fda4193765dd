// CUDA-side view of a Context: the stream, library handles and the shared workspace.
#pragma once
#include "engine/context.h"
#include "engine/cuda_check.h"

namespace cuface {

struct CudaResources {
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  cudnnHandle_t cudnn = nullptr;
  Tensor workspace;  // grows to the largest request, then stays (no allocation in a steady loop)

  // Scratch memory valid until the next call on this context; grows when a larger size is asked for.
  void* workspace_bytes(size_t bytes);
};

inline cudaStream_t cuda_stream(Context& ctx) { return ctx.cuda().stream; }

// Grid size for a grid-stride loop over n elements. Such a loop is correct for any grid size, so
// the CUDA emulator, which runs every thread as a fiber, gets a small grid whose threads loop more
// (still several blocks, so that the stride is exercised).
inline int grid_for(int64_t n, int block) {
#if CUFACE_CUDA_EMULATED
  constexpr int64_t kMaxBlocks = 16;
#else
  constexpr int64_t kMaxBlocks = 65535 * 8;
#endif
  int64_t blocks = (n + block - 1) / block;
  return int(blocks < kMaxBlocks ? (blocks > 0 ? blocks : 1) : kMaxBlocks);
}

}  // namespace cuface

// A grid-stride loop: each thread takes elements i, i + gridDim*blockDim, ... below n.
#define CUFACE_KERNEL_LOOP(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)
