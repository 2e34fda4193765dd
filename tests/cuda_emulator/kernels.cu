#include "tests/cuda_emulator/kernels.h"

#include <cooperative_groups.h>

namespace emulator_test {
namespace {

constexpr int kMaxBlock = 256;

__global__ void block_sums_kernel(const float* x, float* out, bool barrier) {
  CUFACE_SHARED(float[kMaxBlock], partial);
  const int t = threadIdx.x;
  partial[t] = x[blockIdx.x * blockDim.x + t];
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (t < stride) partial[t] += partial[t + stride];
    if (barrier) __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = partial[0];
}

__global__ void shifted_copy_kernel(const float* x, float* y, int n, int offset) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[i + offset];
}

__global__ void warp_sums_kernel(const float* x, float* out) {
  float v = x[threadIdx.x];
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  if (threadIdx.x % 32 == 0) out[threadIdx.x / 32] = v;
}

__global__ void staged_double_kernel(const float* x, float* y, int n) {
  CUFACE_DYNAMIC_SHARED(float, stage);
  for (int i = threadIdx.x; i < n; i += blockDim.x) stage[i] = x[i];
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) y[i] = 2.0f * stage[i];
}

__global__ void staged_scale_kernel(const float* x, float* y, int n) {
  CUFACE_DYNAMIC_SHARED(float, stage);
  CUFACE_SHARED(float[128], factor);  // 512 bytes of static shared memory beside the dynamic stage
  if (threadIdx.x < 128) factor[threadIdx.x] = 2.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) stage[i] = x[i];
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) y[i] = factor[i % 128] * stage[i];
}

// Block b scales [b * slice, end) with end = min((b + 1) * slice, n), or (off by one) without the min.
__global__ void sliced_scale_kernel(const float* x, float* y, int n, int slice, bool off_by_one) {
  const int begin = blockIdx.x * slice;
  const int end = off_by_one ? begin + slice : min(begin + slice, n);
  for (int i = begin + threadIdx.x; i < end; i += blockDim.x) y[i] = 3.0f * x[i];
}

__global__ void cluster_neighbours_kernel(int* out) {
  CUFACE_SHARED(int, rank);
  namespace cg = cooperative_groups;
  cg::cluster_group cluster = cg::this_cluster();
  if (threadIdx.x == 0) rank = int(cluster.block_rank());
  cluster.sync();
  if (threadIdx.x == 0) {
    const unsigned next = (cluster.block_rank() + 1) % cluster.num_blocks();
    out[blockIdx.x] = *cluster.map_shared_rank(&rank, next);
  }
  cluster.sync();
}

__global__ void partial_barrier_kernel(float* out, int active) {
  CUFACE_SHARED(float[kMaxBlock], values);
  if (int(threadIdx.x) >= active) return;
  values[threadIdx.x] = float(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = values[(threadIdx.x + 1) % active];
}

__global__ void count_positive_kernel(const float* x, int* count, int n) {
  CUFACE_SHARED(int, total);
  if (threadIdx.x == 0) total = 0;
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x)
    if (x[i] > 0.0f) atomicAdd(&total, 1);
  __syncthreads();
  if (threadIdx.x == 0) *count = total;
}

__global__ void add_one_kernel(const float* x, float* y, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) y[i] = x[i] + 1.0f;
}

template <class... Params, class... Args>
cudaError_t launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared, cudaStream_t stream, Args... args) {
  return cuda_emulator::launch(kernel, {grid, block, shared, dim3(1, 1, 1)}, stream, args...);
}

}  // namespace

cudaError_t block_sums(const float* x, float* out, int blocks, int block, bool barrier, cudaStream_t stream) {
  return launch(block_sums_kernel, dim3(blocks), dim3(block), 0, stream, x, out, barrier);
}
cudaError_t shifted_copy(const float* x, float* y, int n, int offset, cudaStream_t stream) {
  return launch(shifted_copy_kernel, dim3((n + 127) / 128), dim3(128), 0, stream, x, y, n, offset);
}
cudaError_t warp_sums(const float* x, float* out, int threads, cudaStream_t stream) {
  return launch(warp_sums_kernel, dim3(1), dim3(threads), 0, stream, x, out);
}
cudaError_t staged_double(const float* x, float* y, int n, size_t dynamic_bytes, bool raise_limit, cudaStream_t stream) {
  if (raise_limit) {
    const cudaError_t status =
        cudaFuncSetAttribute(staged_double_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(dynamic_bytes));
    if (status != cudaSuccess) return status;
  }
  return launch(staged_double_kernel, dim3(1), dim3(256), dynamic_bytes, stream, x, y, n);
}
cudaError_t staged_scale(const float* x, float* y, int n, size_t dynamic_bytes, cudaStream_t stream) {
  return launch(staged_scale_kernel, dim3(1), dim3(256), dynamic_bytes, stream, x, y, n);
}
cudaError_t sliced_scale(const float* x, float* y, int n, int slices, bool off_by_one, cudaStream_t stream) {
  const int slice = (n + slices - 1) / slices;
  return launch(sliced_scale_kernel, dim3(slices), dim3(64), 0, stream, x, y, n, slice, off_by_one);
}
cudaError_t cluster_neighbours(int* out, int blocks, int cluster, cudaStream_t stream) {
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(unsigned(blocks));
  config.blockDim = dim3(64);
  config.stream = stream;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeClusterDimension;
  attribute.val.clusterDim.x = unsigned(cluster);
  attribute.val.clusterDim.y = attribute.val.clusterDim.z = 1;
  config.attrs = &attribute;
  config.numAttrs = 1;
  return cudaLaunchKernelEx(&config, cluster_neighbours_kernel, out);
}
cudaError_t partial_barrier(float* out, int active, cudaStream_t stream) {
  return launch(partial_barrier_kernel, dim3(1), dim3(64), 0, stream, out, active);
}
cudaError_t count_positive(const float* x, int* count, int n, cudaStream_t stream) {
  return launch(count_positive_kernel, dim3(1), dim3(128), 0, stream, x, count, n);
}
cudaError_t add_one(const float* x, float* y, int n, cudaStream_t stream) {
  return launch(add_one_kernel, dim3(4), dim3(64), 0, stream, x, y, n);
}
size_t block_sums_static_shared_bytes() {
  cudaFuncAttributes attributes{};
  cudaFuncGetAttributes(&attributes, block_sums_kernel);
  return attributes.sharedSizeBytes;
}

}  // namespace emulator_test
