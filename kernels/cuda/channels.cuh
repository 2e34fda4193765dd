// Building blocks for CUDA kernels over NHWC tensors seen as [rows, C] with the channels contiguous
// (batch norm, PReLU): f32/bf16 element access (also used by the other activation, dropout, bias and
// pooling kernels), an element loop that knows each element's channel, and the geometry and block
// step of a deterministic per-channel reduction over rows.
#pragma once
#include <algorithm>

#include "engine/cuda_context.h"
#include "engine/cuda_launch.h"

namespace cuface::cuda {

// Activations are f32 or bf16; arithmetic is always f32.
__device__ inline float as_float(float v) {
  return v;
}
__device__ inline float as_float(bf16 v) {
  return to_float(v);
}
template <class T>
__device__ inline T from_float(float v);
template <>
__device__ inline float from_float<float>(float v) {
  return v;
}
template <>
__device__ inline bf16 from_float<bf16>(float v) {
  return to_bf16(v);
}

// max(v, 0) that keeps NaN (fmaxf would turn it into 0), as std::max(v, 0.0f) does in the CPU twins:
// a diverging run must show its NaNs on both backends.
__device__ inline float relu_value(float v) { return v < 0.0f ? 0.0f : v; }
// min(v, 0) that keeps NaN (fminf would turn it into 0), as std::min(v, 0.0f) does in the CPU twins.
__device__ inline float negative_part(float v) { return 0.0f < v ? 0.0f : v; }

// Grid-stride loop over n elements calling f(i, c) with c = i % channels; the channel advances by
// the (fixed) stride modulo channels, so there is no 64-bit division per element.
template <class F>
__device__ inline void for_each_element(int64_t n, int channels, F f) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int channel_step = int(stride % channels);
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  int c = int(i % channels);
  for (; i < n; i += stride) {
    f(i, c);
    c += channel_step;
    if (c >= channels) c -= channels;
  }
}

// Per-channel reduction over rows. A block is kReduceChannels channels (threadIdx.x: one warp reads 32
// consecutive values of a row) by kReduceRows rows (threadIdx.y). grid.x covers the channels; grid.y
// = `slabs` splits the rows: thread (x, y) of block (bx, by) visits rows by*kReduceRows + y, stepping by
// slabs * kReduceRows. Each block writes one partial per channel and slab; a finalize kernel then
// combines a channel's partials in slab order. No atomics, so results are bit-for-bit reproducible.
constexpr int kReduceChannels = 32;
constexpr int kReduceRows = 16;

struct ChannelReduceGrid {
  dim3 grid;
  dim3 block;
  int slabs;
};

inline ChannelReduceGrid channel_reduce_grid(Context& ctx, int64_t rows, int channels) {
  int sms = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, ctx.gpu_index()));
  const int64_t channel_blocks = (channels + kReduceChannels - 1) / kReduceChannels;
  // About four blocks per SM in all, while each thread still gets at least 8 rows to accumulate.
  const int64_t for_rows = std::max<int64_t>(1, rows / (kReduceRows * 8));
  const int64_t for_gpu = std::max<int64_t>(1, 4 * int64_t(sms) / channel_blocks);
  const int slabs = int(std::min<int64_t>(std::min(for_rows, for_gpu), 65535));
  return {dim3(unsigned(channel_blocks), unsigned(slabs)), dim3(kReduceChannels, kReduceRows), slabs};
}

// Adds K values per thread over threadIdx.y; afterwards thread row 0 holds the block's totals in v.
// Every thread of the block must call it (it synchronises).
template <int K>
__device__ inline void sum_over_block_rows(float (&v)[K]) {
  CUFACE_SHARED(float[K][kReduceRows][kReduceChannels], shared);
  for (int k = 0; k < K; ++k) shared[k][threadIdx.y][threadIdx.x] = v[k];
  __syncthreads();
  for (int stride = kReduceRows / 2; stride > 0; stride /= 2) {
    if (int(threadIdx.y) < stride)
      for (int k = 0; k < K; ++k) shared[k][threadIdx.y][threadIdx.x] += shared[k][threadIdx.y + stride][threadIdx.x];
    __syncthreads();
  }
  for (int k = 0; k < K; ++k) v[k] = shared[k][0][threadIdx.x];
}

}  // namespace cuface::cuda
