// CUDA bias kernels; the CPU twins are in kernels/cpu/bias.cpp.
#include <algorithm>

#include "engine/cuda_context.h"
#include "engine/cuda_launch.h"
#include "kernels/bias.h"
#include "kernels/cuda/channels.cuh"

namespace cuface::cuda {

namespace {
constexpr int kBlock = 256;

template <class T>
__global__ void add_bias_kernel(T* y, const float* bias, int channels, int64_t n) {
  for_each_element(n, channels, [&](int64_t i, int c) { y[i] = from_float<T>(as_float(y[i]) + bias[c]); });
}

// Pass 1: block (x, y) sums rows [y * rows_per_block, ...) of 32 channels starting at 32 * x; the 32
// lanes of a warp read 32 consecutive channels of one row (coalesced), the 8 warps take every 8th row.
constexpr int kChannelsPerBlock = 32, kRowLanes = 8;
template <class T>
__global__ void bias_grad_partial_kernel(const T* dy, int64_t rows, int64_t channels, int64_t rows_per_block,
                                         float* partial) {
  CUFACE_SHARED(float[kRowLanes][kChannelsPerBlock], sums);
  const int64_t c = int64_t(blockIdx.x) * kChannelsPerBlock + threadIdx.x;
  const int64_t begin = int64_t(blockIdx.y) * rows_per_block;
  const int64_t end = begin + rows_per_block < rows ? begin + rows_per_block : rows;
  float sum = 0.0f;
  if (c < channels)
    for (int64_t r = begin + threadIdx.y; r < end; r += kRowLanes) sum += as_float(dy[r * channels + c]);
  sums[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && c < channels) {
    for (int lane = 1; lane < kRowLanes; ++lane) sum += sums[lane][threadIdx.x];
    partial[int64_t(blockIdx.y) * channels + c] = sum;
  }
}

// Pass 2: each channel adds its row blocks' partial sums, in block order.
__global__ void bias_grad_final_kernel(const float* partial, int64_t row_blocks, int64_t channels, float* db) {
  CUFACE_KERNEL_LOOP(c, channels) {
    float sum = 0.0f;
    for (int64_t b = 0; b < row_blocks; ++b) sum += partial[b * channels + c];
    db[c] += sum;
  }
}
}  // namespace

void add_bias(Context& ctx, Tensor& y, const Tensor& bias) {
  const int64_t n = y.numel();
  if (n == 0) return;
  const int grid = grid_for(n, kBlock);
  if (y.dtype() == DType::BF16)
    launch(add_bias_kernel<bf16>, grid, kBlock, 0, cuda_stream(ctx), y.data<bf16>(), bias.data<float>(),
           int(bias.size(0)), n);
  else
    launch(add_bias_kernel<float>, grid, kBlock, 0, cuda_stream(ctx), y.data<float>(), bias.data<float>(),
           int(bias.size(0)), n);
}

void accumulate_bias_grad(Context& ctx, const Tensor& dy, Tensor& db) {
  const int64_t channels = db.size(0), rows = channels ? dy.numel() / channels : 0;
  if (channels == 0 || rows == 0) return;
  // Enough row blocks to fill the GPU, each at least 64 rows long.
  const int64_t row_blocks = std::min<int64_t>((rows + 63) / 64, 1024);
  const int64_t rows_per_block = (rows + row_blocks - 1) / row_blocks;
  float* partial = static_cast<float*>(ctx.cuda().workspace_bytes(size_t(row_blocks * channels) * sizeof(float)));
  const dim3 grid(unsigned((channels + kChannelsPerBlock - 1) / kChannelsPerBlock), unsigned(row_blocks));
  const dim3 block(kChannelsPerBlock, kRowLanes);
  if (dy.dtype() == DType::BF16)
    launch(bias_grad_partial_kernel<bf16>, grid, block, 0, cuda_stream(ctx), dy.data<bf16>(), rows, channels,
           rows_per_block, partial);
  else
    launch(bias_grad_partial_kernel<float>, grid, block, 0, cuda_stream(ctx), dy.data<float>(), rows, channels,
           rows_per_block, partial);
  launch(bias_grad_final_kernel, grid_for(channels, kBlock), kBlock, 0, cuda_stream(ctx), partial, row_blocks, channels,
         db.data<float>());
}

}  // namespace cuface::cuda
