// Stand-in for CUB's cub::DeviceScan under the CUDA emulator: the one overload cuface uses
// (exclusive prefix sum of 32-bit integers). Like CUB, a call with d_temp_storage == nullptr only
// writes the temporary storage it needs to temp_storage_bytes; a second call with that much device
// memory queues the scan on `stream`. d_out may equal d_in (in place). The implementation is
// cuda_emulator/cub.cpp.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace cub {

struct DeviceScan {
  // d_out[i] = d_in[0] + ... + d_in[i - 1], d_out[0] = 0 (sums wrap around like int32 additions on the GPU).
  static cudaError_t ExclusiveSum(void* d_temp_storage, size_t& temp_storage_bytes, const int32_t* d_in,
                                  int32_t* d_out, int num_items, cudaStream_t stream = 0);
};

}  // namespace cub
