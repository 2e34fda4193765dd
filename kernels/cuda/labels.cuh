// Label counting shared by the CUDA loss kernels (margin, softmax cross-entropy); the CPU twin is
// kernels/cpu/labels.h.
#pragma once
#include <cstdint>

namespace cuface::cuda {

// Rows with a label >= 0 (the rows the losses are averaged over), counted by the whole block: every
// thread must call it, and every thread gets the total.
__device__ inline int count_labelled(const int32_t* labels, int64_t rows) {
  int count = 0;
  for (int64_t base = 0; base < rows; base += blockDim.x) {
    const int64_t i = base + threadIdx.x;
    count += __syncthreads_count(i < rows && labels[i] >= 0);
  }
  return count;
}

}  // namespace cuface::cuda
