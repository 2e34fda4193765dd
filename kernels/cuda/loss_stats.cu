// One block sums the per-row statistics (N is a batch, at most a few thousand rows) in a fixed order,
// so the logged loss is the same from run to run.
#include "engine/cuda_context.h"
#include "engine/cuda_launch.h"
#include "kernels/loss_stats.h"

namespace cuface::cuda {

namespace {
constexpr int kBlock = 256;

__global__ void reduce_row_stats_kernel(const int32_t* labels, const float* row_stats, float* stats, int64_t rows) {
  CUFACE_SHARED(float[kRowStatColumns + 1][kBlock], partial);
  float sums[kRowStatColumns + 1] = {};
  for (int64_t i = threadIdx.x; i < rows; i += kBlock) {
    if (labels[i] < 0) continue;
    for (int c = 0; c < kRowStatColumns; ++c) sums[c] += row_stats[i * kRowStatColumns + c];
    sums[kRowStatColumns] += 1.0f;
  }
  for (int c = 0; c <= kRowStatColumns; ++c) partial[c][threadIdx.x] = sums[c];
  __syncthreads();
  for (int stride = kBlock / 2; stride > 0; stride >>= 1) {
    if (int(threadIdx.x) < stride)
      for (int c = 0; c <= kRowStatColumns; ++c) partial[c][threadIdx.x] += partial[c][threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const float labelled = partial[kRowStatColumns][0];
    for (int c = 0; c < kRowStatColumns; ++c) stats[c] = labelled > 0 ? partial[c][0] / labelled : 0.0f;
    stats[kRowStatColumns] = labelled;
  }
}
}  // namespace

void reduce_row_stats(Context& ctx, const Tensor& labels, const Tensor& row_stats, Tensor& stats) {
  launch(reduce_row_stats_kernel, 1, kBlock, 0, cuda_stream(ctx), labels.data<int32_t>(), row_stats.data<float>(),
         stats.data<float>(), labels.numel());
}

}  // namespace cuface::cuda
