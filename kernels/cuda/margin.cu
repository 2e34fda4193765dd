// CUDA fused margin-softmax cross-entropy (math in kernels/margin.h; CPU twin kernels/cpu/margin.cpp).
//
// The [N, C] cosines are the one big buffer of the head (C up to 200k classes), so the kernel reads
// them once and writes the gradient over them once. A row is cut into G slices, one block each:
//   1. the block copies its slice into shared memory while it computes an online softmax of it
//      (running max and sum of exp, in cosine units) and the argmax of the raw cosines;
//   2. the G blocks of a row form a thread-block cluster (sm_90) and merge their partial results
//      through distributed shared memory, each in the same order, so all hold the same max and sum;
//   3. each block writes dL/dcos for its slice from shared memory.
// G is chosen so that a slice fits in shared memory (G <= 8, the portable cluster size: 8 x ~100 KB
// covers C = 200k). Without clusters (sm_80) G = 1 and the row is cached when it fits; a row that
// does not fit is read a second time from global memory in step 3 (mostly from L2).
#include <cooperative_groups.h>

#include <cfloat>
#include <cstdint>

#include "engine/cuda_context.h"
#include "engine/cuda_launch.h"
#include "kernels/cuda/labels.cuh"
#include "kernels/margin.h"

namespace cuface::cuda {

namespace {
namespace cg = cooperative_groups;

constexpr int kBlock = 512;
constexpr int kMaxSlices = 8;                  // portable cluster size
constexpr int64_t kTargetSliceFloats = 16384;  // 64 KB of shared memory per block when C is large

// What one thread, block or cluster knows about its part of a row: the online softmax of the
// margin-modified cosines u (z = s u), i.e. max u and sum exp(s (u - max)), and the argmax of the raw
// cosines (lowest index on ties).
struct RowPartial {
  float max;
  float sum;
  float best_cos;
  int64_t best_index;
};

__device__ inline RowPartial empty_partial(int64_t classes) { return {-INFINITY, 0.0f, -INFINITY, classes}; }

__device__ inline void add_value(RowPartial& p, float u, float raw, int64_t j, float s) {
  if (u > p.max) {
    p.sum = p.sum * expf(s * (p.max - u)) + 1.0f;  // p.max = -inf gives 0 * 0 + 1
    p.max = u;
  } else {
    p.sum += expf(s * (u - p.max));
  }
  if (raw > p.best_cos) p.best_cos = raw, p.best_index = j;  // j increases within a thread: ties keep the first
}

__device__ inline RowPartial merge(const RowPartial& a, const RowPartial& b, float s) {
  RowPartial r;
  // A partial whose max is still -inf has a sum of 0 (no value) or NaN (NaN values, which never
  // raise the max): adding it keeps the NaN, so that a NaN cosine makes its row's loss NaN as on the CPU.
  if (b.max == -INFINITY) {
    r.max = a.max, r.sum = a.sum + b.sum;
  } else if (a.max == -INFINITY) {
    r.max = b.max, r.sum = b.sum + a.sum;
  } else {
    r.max = fmaxf(a.max, b.max);
    r.sum = a.sum * expf(s * (a.max - r.max)) + b.sum * expf(s * (b.max - r.max));
  }
  const bool take_b = b.best_cos > a.best_cos || (b.best_cos == a.best_cos && b.best_index < a.best_index);
  r.best_cos = take_b ? b.best_cos : a.best_cos;
  r.best_index = take_b ? b.best_index : a.best_index;
  return r;
}

__device__ inline RowPartial shuffle_xor(const RowPartial& p, int offset) {
  return {__shfl_xor_sync(0xffffffffu, p.max, offset), __shfl_xor_sync(0xffffffffu, p.sum, offset),
          __shfl_xor_sync(0xffffffffu, p.best_cos, offset),
          (int64_t)__shfl_xor_sync(0xffffffffu, (long long)p.best_index, offset)};
}

// Block-wide merge; the result lands in `result` (shared), visible to all threads after return.
__device__ inline void block_merge(RowPartial p, float s, RowPartial* warp_partials, RowPartial* result) {
  for (int offset = 16; offset > 0; offset >>= 1) p = merge(p, shuffle_xor(p, offset), s);
  if (threadIdx.x % 32 == 0) warp_partials[threadIdx.x / 32] = p;
  __syncthreads();
  if (threadIdx.x == 0) {
    RowPartial r = warp_partials[0];
    for (int w = 1; w < kBlock / 32; ++w) r = merge(r, warp_partials[w], s);
    *result = r;
  }
  __syncthreads();
}

// grid (slices, rows); block b of row i owns columns [b * slice, min((b + 1) * slice, C)).
__global__ void __launch_bounds__(kBlock) margin_rows_kernel(float* cos, const int32_t* labels, float* row_stats,
                                                              int64_t rows, int64_t classes, int64_t slice,
                                                              MarginParams params, bool cached) {
  CUFACE_DYNAMIC_SHARED(float, cache);
  CUFACE_SHARED(RowPartial[kBlock / 32], warp_partials);
  CUFACE_SHARED(RowPartial, block_result);
  CUFACE_SHARED(RowPartial, row_result);

  const int labelled = count_labelled(labels, rows);
  const int64_t row = blockIdx.y;
  const int slices = gridDim.x;
  const int64_t begin = int64_t(blockIdx.x) * slice;
  const int64_t end = min(begin + slice, classes);
  float* z = cos + row * classes;
  const int32_t label = labels[row];
  if (label < 0 || label >= classes) {
    // Ignored row; or a label out of range, poisoned so that the logged loss shows it. Every block of
    // the row leaves here, so none waits at the cluster barrier below.
    const float fill = label < -1 || label >= classes ? NAN : 0.0f;
    for (int64_t j = begin + threadIdx.x; j < end; j += kBlock) z[j] = fill;
    if (blockIdx.x == 0 && threadIdx.x == 0)
      for (int c = 0; c < kRowStatColumns; ++c) row_stats[row * kRowStatColumns + c] = fill;
    return;
  }
  const float s = params.s;
  const float target_cos = z[label];  // read by every block before any block writes (cluster barrier below)
  const MarginTarget target = margin_target(params, target_cos);

  // 1. One read of the slice: cache it, online softmax of u, argmax of the raw cosines.
  RowPartial p = empty_partial(classes);
  for (int64_t j = begin + threadIdx.x; j < end; j += kBlock) {
    const float v = z[j];
    if (cached) cache[j - begin] = v;
    add_value(p, j == label ? target.value : v, v, j, s);
  }
  block_merge(p, s, warp_partials, &block_result);

  // 2. Merge the slices of the row (same order in every block, so every block gets the same numbers).
  if (slices == 1) {
    if (threadIdx.x == 0) row_result = block_result;
    __syncthreads();
  } else {
#if CUFACE_CUDA_EMULATED || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900)
    cg::cluster_group cluster = cg::this_cluster();
    cluster.sync();  // every block's block_result is written
    if (threadIdx.x == 0) {
      RowPartial r = *cluster.map_shared_rank(&block_result, 0);
      for (int b = 1; b < slices; ++b) r = merge(r, *cluster.map_shared_rank(&block_result, b), s);
      row_result = r;
    }
    cluster.sync();  // no block leaves (freeing its shared memory) while another still reads it
#else
    __trap();  // the host launches several slices per row only where clusters exist
#endif
  }

  // 3. One write: dL/dcos = s p / L, at the target s (p - 1) f'(c) / L, with p = exp(s (u - max)) / sum.
  const float row_max = row_result.max;
  const float inverse_sum = 1.0f / row_result.sum;
  const float scale = s / float(labelled);
  for (int64_t j = begin + threadIdx.x; j < end; j += kBlock) {
    const float v = cached ? cache[j - begin] : z[j];
    if (j == label) {
      const float prob = expf(s * (target.value - row_max)) * inverse_sum;
      z[j] = scale * (prob - 1.0f) * target.slope;
    } else {
      z[j] = scale * expf(s * (v - row_max)) * inverse_sum;
    }
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    float* out = row_stats + row * kRowStatColumns;
    out[0] = s * (row_max - target.value) + logf(row_result.sum);  // lse(z) - z_y
    out[1] = row_result.best_index == label ? 1.0f : 0.0f;
    out[2] = target_cos;
  }
}

struct DeviceLimits {
  int max_shared_bytes;  // opt-in dynamic + static shared memory per block
  bool clusters;
};

DeviceLimits device_limits() {
  int device = 0, major = 0, shared = 0, cluster_launch = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  CUDA_CHECK(cudaDeviceGetAttribute(&shared, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  CUDA_CHECK(cudaDeviceGetAttribute(&cluster_launch, cudaDevAttrClusterLaunch, device));
  return {shared, major >= 9 && cluster_launch != 0};
}
}  // namespace

void margin_softmax_ce(Context& ctx, Tensor& cos, const Tensor& labels, const MarginParams& params, Tensor& row_stats) {
  const int64_t rows = cos.size(0), classes = cos.size(1);
  if (rows == 0 || classes == 0) return;
  CUFACE_CHECK(rows <= 65535, "margin_softmax_ce: at most 65535 rows per call, got " + std::to_string(rows));

  const DeviceLimits limits = device_limits();
  cudaFuncAttributes attributes{};
  CUDA_CHECK(cudaFuncGetAttributes(&attributes, margin_rows_kernel));
  // Clusters need the device (sm_90) and the kernel's code built for it: a binary built for sm_80 only
  // runs its PTX on an H100, whose cluster branch was compiled out (it traps).
  int slices = 1;
  if (limits.clusters && attributes.ptxVersion >= 90)
    slices = int(std::min<int64_t>(kMaxSlices, std::max<int64_t>(1, (classes + kTargetSliceFloats - 1) / kTargetSliceFloats)));
  const int64_t slice = (classes + slices - 1) / slices;
  const size_t cache_bytes = size_t(slice) * sizeof(float);
  const bool cached = cache_bytes + attributes.sharedSizeBytes <= size_t(limits.max_shared_bytes);
  const size_t dynamic_bytes = cached ? cache_bytes : 0;
  // The default limit is 48 KiB minus the kernel's static shared memory, not 48 KiB: compare with it.
  if (dynamic_bytes > size_t(attributes.maxDynamicSharedSizeBytes))
    CUDA_CHECK(cudaFuncSetAttribute(margin_rows_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(dynamic_bytes)));

  cudaLaunchConfig_t config{};
  config.gridDim = dim3(unsigned(slices), unsigned(rows));
  config.blockDim = dim3(kBlock);
  config.dynamicSmemBytes = dynamic_bytes;
  config.stream = cuda_stream(ctx);
  cudaLaunchAttribute cluster{};
  cluster.id = cudaLaunchAttributeClusterDimension;
  cluster.val.clusterDim.x = unsigned(slices);
  cluster.val.clusterDim.y = 1;
  cluster.val.clusterDim.z = 1;
  if (slices > 1) {
    config.attrs = &cluster;
    config.numAttrs = 1;
  }
  CUDA_CHECK(cudaLaunchKernelEx(&config, margin_rows_kernel, cos.data<float>(), labels.data<int32_t>(),
                                row_stats.data<float>(), rows, classes, slice, params, cached));
}

}  // namespace cuface::cuda
