// Small kernels that exercise the emulator (kernels.cu), each with a host function that launches
// it on `stream`. Some take a flag that plants a defect the emulator must catch.
#pragma once
#include <cuda_runtime.h>

namespace emulator_test {

// out[b] = sum of x[b * block .. (b + 1) * block) by a shared-memory tree; `barrier` false drops the
// __syncthreads inside the tree (a race).
cudaError_t block_sums(const float* x, float* out, int blocks, int block, bool barrier, cudaStream_t stream);
// y[i] = x[i + offset] for i < n: offset 1 reads one element past the end of x.
cudaError_t shifted_copy(const float* x, float* y, int n, int offset, cudaStream_t stream);
// out[w] = sum over the lanes of warp w of x (one block of `threads` threads) with __shfl_xor_sync
// and a full mask: with fewer than 32 threads the mask names lanes that are not there.
cudaError_t warp_sums(const float* x, float* out, int threads, cudaStream_t stream);
// y[i] = 2 x[i] after staging x in `dynamic_bytes` of dynamic shared memory (one block of 256).
cudaError_t staged_double(const float* x, float* y, int n, size_t dynamic_bytes, bool raise_limit, cudaStream_t stream);
// The same with a factor of 2 kept in 512 bytes of static shared memory, no attribute raised.
cudaError_t staged_scale(const float* x, float* y, int n, size_t dynamic_bytes, cudaStream_t stream);
// y = 3 x over `slices` blocks, each a slice of ceil(n / slices); `off_by_one` forgets to clip the
// last slice at n (it runs past the end when slices do not divide n).
cudaError_t sliced_scale(const float* x, float* y, int n, int slices, bool off_by_one, cudaStream_t stream);
// Clusters of `cluster` blocks: each block publishes its rank in shared memory; after cluster.sync()
// block r writes the rank of block (r + 1) % cluster read through map_shared_rank.
cudaError_t cluster_neighbours(int* out, int blocks, int cluster, cudaStream_t stream);
// Threads with threadIdx.x < active reach a __syncthreads the others skip by returning early.
cudaError_t partial_barrier(float* out, int active, cudaStream_t stream);
// count[0] = number of threads with x[i] > 0 (atomics on shared memory, then one write).
cudaError_t count_positive(const float* x, int* count, int n, cudaStream_t stream);
// y = x + 1, elementwise, grid-stride.
cudaError_t add_one(const float* x, float* y, int n, cudaStream_t stream);
// The static shared memory the kernel of block_sums declares, as cudaFuncGetAttributes reports it.
size_t block_sums_static_shared_bytes();

}  // namespace emulator_test
