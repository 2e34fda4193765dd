// CUDA fused softmax cross-entropy: one warp per row (C is small: 2 or 7 classes, or a few thousand at
// most), two reads of the row (max/sum, then the gradient, which hits the cache) and one write.
// The CPU twin is kernels/cpu/softmax_ce.cpp.
#include <cfloat>

#include "engine/cuda_context.h"
#include "engine/cuda_launch.h"
#include "kernels/cuda/labels.cuh"
#include "kernels/softmax_ce.h"

namespace cuface::cuda {

namespace {
constexpr int kWarpsPerBlock = 8;
constexpr int kBlock = 32 * kWarpsPerBlock;

__global__ void softmax_ce_kernel(float* logits, const int32_t* labels, float* row_stats, int64_t rows,
                                  int64_t classes, float q_label, float q_other) {
  const int labelled = count_labelled(labels, rows);
  const int64_t i = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (i >= rows) return;
  float* row = logits + i * classes;
  float* out = row_stats + i * kRowStatColumns;
  const int32_t label = labels[i];
  if (label < 0 || label >= classes) {
    // Ignored row; or a label out of range, which poisons the row so that the logged loss shows it.
    const float fill = label < -1 || label >= classes ? NAN : 0.0f;
    for (int64_t j = lane; j < classes; j += 32) row[j] = fill;
    if (lane == 0) out[0] = out[1] = out[2] = fill;
    return;
  }
  // Pass 1: max, argmax (lowest index on ties) and the plain sum of the logits.
  float max = -FLT_MAX, z_sum = 0;
  int64_t best = classes;
  for (int64_t j = lane; j < classes; j += 32) {
    const float v = row[j];
    if (v > max) max = v, best = j;
    z_sum += v;
  }
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float other_max = __shfl_xor_sync(0xffffffffu, max, offset);
    const int64_t other_best = __shfl_xor_sync(0xffffffffu, best, offset);
    if (other_max > max || (other_max == max && other_best < best)) max = other_max, best = other_best;
    z_sum += __shfl_xor_sync(0xffffffffu, z_sum, offset);
  }
  float exp_sum = 0;
  for (int64_t j = lane; j < classes; j += 32) exp_sum += expf(row[j] - max);
  for (int offset = 16; offset > 0; offset >>= 1) exp_sum += __shfl_xor_sync(0xffffffffu, exp_sum, offset);
  const float lse = max + logf(exp_sum);
  const float z_label = row[label];
  if (lane == 0) {
    out[0] = lse - (q_label * z_label + q_other * (z_sum - z_label));
    out[1] = best == label ? 1.0f : 0.0f;
    out[2] = expf(z_label - lse);
  }
  __syncwarp();  // every lane has read z_label before the row is overwritten
  // Pass 2: dL/dz = (p - q) / labelled, over the logits.
  const float weight = 1.0f / float(labelled);
  for (int64_t j = lane; j < classes; j += 32) row[j] = (expf(row[j] - lse) - (j == label ? q_label : q_other)) * weight;
}
}  // namespace

void softmax_ce(Context& ctx, Tensor& logits, const Tensor& labels, float smoothing, Tensor& row_stats) {
  const int64_t rows = logits.size(0), classes = logits.size(1);
  if (rows == 0) return;
  const float q_other = classes > 1 ? smoothing / float(classes - 1) : 0.0f;
  const unsigned blocks = unsigned((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  launch(softmax_ce_kernel, blocks, kBlock, 0, cuda_stream(ctx), logits.data<float>(), labels.data<int32_t>(),
         row_stats.data<float>(), rows, classes, 1.0f - smoothing, q_other);
}

}  // namespace cuface::cuda
