// Kernel launches and shared-memory declarations, written once for a GPU and for the emulator
// (kernels/cuda/*.cu and the few engine kernels use them).
//
//   launch(relu_kernel<float>, grid, block, shared_bytes, stream, x, y, n);
//
// On a GPU this is relu_kernel<<<grid, block, shared_bytes, stream>>>(x, y, n) followed by a check of
// the launch error; under the emulator (-DCUFACE_CUDA=EMULATE) the launch is checked against the
// device profile's limits and the grid is queued on the emulated stream.
//
// Shared memory is declared as CUFACE_SHARED(float[256], partial) (static) or
// CUFACE_DYNAMIC_SHARED(float, cache) (the launch's dynamic bytes): on a GPU these are
// `__shared__ float partial[256]` and `extern __shared__ float cache[]`; the emulator gives every
// block storage of its own and checks it for races.
#pragma once
#include <cuda_runtime.h>

#include <utility>

#include "engine/cuda_check.h"

#if !CUFACE_CUDA_EMULATED
template <class T>
using cuface_shared_type = T;
#define CUFACE_SHARED(type, name) __shared__ cuface_shared_type<type> name
#define CUFACE_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

namespace cuface {

template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
            Args&&... args) {
#if CUFACE_CUDA_EMULATED
  const cuda_emulator::LaunchShape shape{grid, block, shared_bytes, dim3(1, 1, 1)};
  CUDA_CHECK(cuda_emulator::launch(kernel, shape, stream, std::forward<Args>(args)...));
#else
  kernel<<<grid, block, shared_bytes, stream>>>(std::forward<Args>(args)...);
  CUDA_CHECK_LAUNCH();
#endif
}

}  // namespace cuface
