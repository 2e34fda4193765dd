// CUDA kernels of the class-sharded margin softmax (kernels/sharded_margin.h; CPU twin
// kernels/cpu/sharded_margin.cpp). One block per row; each kernel walks its row's C_r logits once
// (the last one twice: exponentials, then the gradient). Block reductions in shared memory, fixed
// order, so the same input gives the same bits.
#include <cfloat>

#include "engine/cuda_context.h"
#include "engine/cuda_launch.h"
#include "kernels/sharded_margin.h"

namespace cuface::cuda {

namespace {
constexpr int kBlock = 256;

// Reduces `value` over the block with `op`; every thread gets the result.
template <class Op>
__device__ float block_reduce(float value, Op op) {
  CUFACE_SHARED(float[kBlock], shared);
  shared[threadIdx.x] = value;
  __syncthreads();
  for (int stride = kBlock / 2; stride > 0; stride /= 2) {
    if (int(threadIdx.x) < stride) shared[threadIdx.x] = op(shared[threadIdx.x], shared[threadIdx.x + stride]);
    __syncthreads();
  }
  const float result = shared[0];
  __syncthreads();
  return result;
}

struct Max {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct Sum {
  __device__ float operator()(float a, float b) const { return a + b; }
};

__global__ void logits_kernel(float* z, const int32_t* labels, int64_t rows, int64_t classes, int64_t first_class,
                              int64_t all_classes, MarginParams params, float* maxima, float* target) {
  const int64_t i = blockIdx.x;
  float* row = z + i * classes;
  const int64_t local = int64_t(labels[i]) - first_class;
  const bool owned = labels[i] >= 0 && local >= 0 && local < classes;
  CUFACE_SHARED(float, target_z);
  if (threadIdx.x == 0) {
    target_z = 0.0f;
    target[i] = target[rows + i] = target[2 * rows + i] = target[3 * rows + i] = 0.0f;
    if (owned) {
      const MarginTarget margin = margin_target(params, row[local]);
      target_z = params.s * margin.value;
      target[rows + i] = target_z;
      target[2 * rows + i] = row[local];
      target[3 * rows + i] = margin.slope;
    }
    if (labels[i] < -1 || labels[i] >= all_classes) target[rows + i] = NAN;  // a bad label: the loss shows it
  }
  __syncthreads();
  float best_cos = -INFINITY, best_z = -INFINITY;
  for (int64_t j = threadIdx.x; j < classes; j += kBlock) {
    const float c = row[j];
    best_cos = fmaxf(best_cos, c);
    const float v = (owned && j == local) ? target_z : params.s * c;
    best_z = fmaxf(best_z, v);
    row[j] = v;
  }
  best_cos = block_reduce(best_cos, Max());
  best_z = block_reduce(best_z, Max());
  if (threadIdx.x == 0) {
    maxima[i] = best_z;
    maxima[rows + i] = best_cos;
  }
}

__global__ void exp_sums_kernel(const float* z, int64_t classes, const float* maxima, float* target) {
  const int64_t i = blockIdx.x;
  const float* row = z + i * classes;
  const float max_z = maxima[i];
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < classes; j += kBlock) sum += expf(row[j] - max_z);
  sum = block_reduce(sum, Sum());
  if (threadIdx.x == 0) target[i] = sum;
}

__global__ void gradient_kernel(float* z, const int32_t* labels, int64_t rows, int64_t classes, int64_t first_class,
                                float s, const float* maxima, const float* target, float* row_stats) {
  const int64_t i = blockIdx.x;
  float* row = z + i * classes;
  float* out = row_stats + i * kRowStatColumns;
  // L: labelled rows of the whole batch (every block counts them; N is small next to N x C_r).
  float count = 0.0f;
  for (int64_t r = threadIdx.x; r < rows; r += kBlock) count += labels[r] >= 0 ? 1.0f : 0.0f;
  const float labelled = block_reduce(count, Sum());
  if (labels[i] < 0) {
    const float fill = labels[i] < -1 ? NAN : 0.0f;  // -1 is ignored; anything lower is a bad label
    for (int64_t j = threadIdx.x; j < classes; j += kBlock) row[j] = fill;
    if (threadIdx.x == 0) out[0] = out[1] = out[2] = fill;
    return;
  }
  const float sum = target[i], target_z = target[rows + i], target_cos = target[2 * rows + i];
  const float slope = target[3 * rows + i], max_z = maxima[i];
  if (threadIdx.x == 0) {
    out[0] = logf(sum) + max_z - target_z;
    out[1] = target_cos >= maxima[rows + i] ? 1.0f : 0.0f;
    out[2] = target_cos;
  }
  const float weight = 1.0f / labelled;
  const int64_t local = int64_t(labels[i]) - first_class;
  for (int64_t j = threadIdx.x; j < classes; j += kBlock) {
    const float p = expf(row[j] - max_z) / sum;
    row[j] = j == local ? s * weight * (p - 1.0f) * slope : s * weight * p;
  }
}

}  // namespace

void sharded_margin_logits(Context& ctx, Tensor& cos, const Tensor& labels, int64_t first_class, int64_t all_classes,
                           const MarginParams& params, Tensor& maxima, Tensor& target) {
  const int64_t rows = cos.size(0);
  if (rows == 0) return;
  launch(logits_kernel, unsigned(rows), kBlock, 0, cuda_stream(ctx), cos.data<float>(), labels.data<int32_t>(), rows,
         cos.size(1), first_class, all_classes, params, maxima.data<float>(), target.data<float>());
}

void sharded_margin_exp_sums(Context& ctx, const Tensor& z, const Tensor& maxima, Tensor& target) {
  const int64_t rows = z.size(0);
  if (rows == 0) return;
  launch(exp_sums_kernel, unsigned(rows), kBlock, 0, cuda_stream(ctx), z.data<float>(), z.size(1), maxima.data<float>(),
         target.data<float>());
}

void sharded_margin_gradient(Context& ctx, Tensor& z, const Tensor& labels, int64_t first_class,
                             const MarginParams& params, const Tensor& maxima, const Tensor& target, Tensor& row_stats) {
  const int64_t rows = z.size(0);
  if (rows == 0) return;
  launch(gradient_kernel, unsigned(rows), kBlock, 0, cuda_stream(ctx), z.data<float>(), labels.data<int32_t>(), rows,
         z.size(1), first_class, params.s, maxima.data<float>(), target.data<float>(), row_stats.data<float>());
}

}  // namespace cuface::cuda
