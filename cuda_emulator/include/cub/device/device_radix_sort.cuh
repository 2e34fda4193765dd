// Stand-in for CUB's cub::DeviceRadixSort under the CUDA emulator: the one overload cuface uses
// (ascending sort of 64-bit unsigned keys). Like CUB, a call with d_temp_storage == nullptr only
// writes the temporary storage it needs to temp_storage_bytes; a second call with that much device
// memory queues the sort on `stream`. Keys are ordered by their bits [begin_bit, end_bit) alone and
// the sort is stable, as CUB documents. The implementation is cuda_emulator/cub.cpp.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace cub {

struct DeviceRadixSort {
  // d_keys_out must not overlap d_keys_in (CUB has no in-place variant of this overload).
  static cudaError_t SortKeys(void* d_temp_storage, size_t& temp_storage_bytes, const uint64_t* d_keys_in,
                              uint64_t* d_keys_out, int num_items, int begin_bit = 0, int end_bit = 64,
                              cudaStream_t stream = 0);
};

}  // namespace cub
