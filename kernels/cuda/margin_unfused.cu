// CUDA unfused margin chain: one kernel per pass over the whole [N, C] matrix (see
// kernels/margin_unfused.h); the fused kernel is kernels/cuda/margin.cu.
#include <cfloat>

#include "engine/cuda_context.h"
#include "engine/cuda_launch.h"
#include "kernels/margin_unfused.h"

namespace cuface::cuda {

namespace {
constexpr int kBlock = 256;

__global__ void onehot_kernel(const int32_t* y, float* onehot, int64_t total, int64_t classes) {
  CUFACE_KERNEL_LOOP(e, total) onehot[e] = y[e / classes] == e % classes ? 1.0f : 0.0f;
}
__global__ void phi_kernel(const float* c, float* phi, int64_t total, MarginParams params) {
  CUFACE_KERNEL_LOOP(e, total) phi[e] = margin_target(params, c[e]).value;
}
__global__ void blend_kernel(const float* onehot, const float* phi, const float* c, float* z, int64_t total, float s) {
  CUFACE_KERNEL_LOOP(e, total) z[e] = s * (onehot[e] * phi[e] + (1.0f - onehot[e]) * c[e]);
}
// One block per row: max (or sum) of a row.
template <bool kMax>
__global__ void row_reduce_kernel(const float* x, float* out, int64_t classes) {
  CUFACE_SHARED(float[kBlock], partial);
  const float* row = x + int64_t(blockIdx.x) * classes;
  float acc = kMax ? -FLT_MAX : 0.0f;
  for (int64_t j = threadIdx.x; j < classes; j += kBlock) acc = kMax ? fmaxf(acc, row[j]) : acc + row[j];
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int stride = kBlock / 2; stride > 0; stride >>= 1) {
    if (int(threadIdx.x) < stride)
      partial[threadIdx.x] = kMax ? fmaxf(partial[threadIdx.x], partial[threadIdx.x + stride])
                                  : partial[threadIdx.x] + partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = partial[0];
}
__global__ void exp_kernel(const float* z, const float* row_max, float* p, int64_t total, int64_t classes) {
  CUFACE_KERNEL_LOOP(e, total) p[e] = expf(z[e] - row_max[e / classes]);
}
__global__ void divide_kernel(float* p, const float* row_sum, int64_t total, int64_t classes) {
  CUFACE_KERNEL_LOOP(e, total) p[e] /= row_sum[e / classes];
}
// One thread per row: loss, correct, target (a framework's gather, argmax and log over the row).
__global__ void row_stats_kernel(const float* onehot, const float* z, const float* row_max, const float* row_sum,
                                 const float* c, const int32_t* y, float* row_stats, int64_t rows, int64_t classes) {
  CUFACE_KERNEL_LOOP(i, rows) {
    float loss = 0, target = 0;
    int64_t best = 0;
    for (int64_t j = 0; j < classes; ++j) {
      const int64_t e = i * classes + j;
      if (onehot[e] != 0.0f) loss -= z[e] - row_max[i] - logf(row_sum[i]), target += c[e];
      if (c[e] > c[i * classes + best]) best = j;
    }
    row_stats[i * kRowStatColumns] = loss;
    row_stats[i * kRowStatColumns + 1] = y[i] >= 0 && best == y[i] ? 1.0f : 0.0f;
    row_stats[i * kRowStatColumns + 2] = target;
  }
}
__global__ void count_labelled_kernel(const int32_t* y, int64_t rows, float* count) {
  CUFACE_SHARED(int, total);
  if (threadIdx.x == 0) total = 0;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < rows; i += blockDim.x)
    if (y[i] >= 0) atomicAdd(&total, 1);
  __syncthreads();
  if (threadIdx.x == 0) *count = float(total);
}
__global__ void gradient_kernel(const float* onehot, const float* p, const int32_t* y, const float* labelled,
                                float* c, int64_t total, int64_t classes, MarginParams params) {
  CUFACE_KERNEL_LOOP(e, total) {
    const float slope = onehot[e] != 0.0f ? margin_target(params, c[e]).slope : 1.0f;
    c[e] = y[e / classes] < 0 ? 0.0f : params.s / *labelled * (p[e] - onehot[e]) * slope;
  }
}
}  // namespace

void margin_softmax_ce_unfused(Context& ctx, Tensor& cos, const Tensor& labels, const MarginParams& params,
                               Tensor& row_stats) {
  const int64_t rows = cos.size(0), classes = cos.size(1), total = rows * classes;
  if (total == 0) return;
  cudaStream_t stream = cuda_stream(ctx);
  const Device device = Device::CUDA;
  Tensor onehot = Tensor::empty({rows, classes}, DType::F32, device), phi = Tensor::empty({rows, classes}, DType::F32, device);
  Tensor z = Tensor::empty({rows, classes}, DType::F32, device), p = Tensor::empty({rows, classes}, DType::F32, device);
  Tensor row_max = Tensor::empty({rows}, DType::F32, device), row_sum = Tensor::empty({rows}, DType::F32, device);
  Tensor labelled = Tensor::empty({1}, DType::F32, device);
  const int32_t* y = labels.data<int32_t>();
  float* c = cos.data<float>();
  const int grid = grid_for(total, kBlock);
  launch(onehot_kernel, grid, kBlock, 0, stream, y, onehot.data<float>(), total, classes);
  launch(phi_kernel, grid, kBlock, 0, stream, c, phi.data<float>(), total, params);
  launch(blend_kernel, grid, kBlock, 0, stream, onehot.data<float>(), phi.data<float>(), c, z.data<float>(), total,
         params.s);
  launch(row_reduce_kernel<true>, unsigned(rows), kBlock, 0, stream, z.data<float>(), row_max.data<float>(), classes);
  launch(exp_kernel, grid, kBlock, 0, stream, z.data<float>(), row_max.data<float>(), p.data<float>(), total, classes);
  launch(row_reduce_kernel<false>, unsigned(rows), kBlock, 0, stream, p.data<float>(), row_sum.data<float>(), classes);
  launch(divide_kernel, grid, kBlock, 0, stream, p.data<float>(), row_sum.data<float>(), total, classes);
  launch(row_stats_kernel, grid_for(rows, kBlock), kBlock, 0, stream, onehot.data<float>(), z.data<float>(),
         row_max.data<float>(), row_sum.data<float>(), c, y, row_stats.data<float>(), rows, classes);
  launch(count_labelled_kernel, 1, kBlock, 0, stream, y, rows, labelled.data<float>());
  launch(gradient_kernel, grid, kBlock, 0, stream, onehot.data<float>(), p.data<float>(), y, labelled.data<float>(), c,
         total, classes, params);
}

}  // namespace cuface::cuda
