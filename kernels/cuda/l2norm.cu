// CUDA row-wise L2 normalisation: one warp per row (D = 512 gives each lane 16 elements, read
// coalesced), sums reduced with warp shuffles; the CPU twin is kernels/cpu/l2norm.cpp.
#include "engine/cuda_context.h"
#include "engine/cuda_launch.h"
#include "kernels/l2norm.h"

namespace cuface::cuda {

namespace {
constexpr int kWarpsPerBlock = 8;

__device__ inline float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ inline void store(float* p, float v) { *p = v; }
__device__ inline void store(bf16* p, float v) { *p = to_bf16(v); }

template <class Out>
__global__ void l2norm_forward_kernel(const float* x, Out* y, float* norms, int64_t rows, int64_t dim) {
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const float* xr = x + row * dim;
  float sum = 0;
  for (int64_t j = lane; j < dim; j += 32) sum += xr[j] * xr[j];
  // max(|x|, eps) that keeps a NaN norm, as std::max in the CPU twin (fmaxf would give eps).
  const float length = sqrtf(warp_sum(sum));
  const float norm = length < kL2NormEps ? kL2NormEps : length;
  if (lane == 0) norms[row] = norm;
  const float inverse = 1.0f / norm;
  for (int64_t j = lane; j < dim; j += 32) store(y + row * dim + j, xr[j] * inverse);
}

// dx = (dy - y <y, dy>) / n with y = x / n.
__global__ void l2norm_backward_kernel(const float* x, const float* norms, const float* dy, float* dx, int64_t rows,
                                       int64_t dim, bool accumulate) {
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const float* xr = x + row * dim;
  const float* dyr = dy + row * dim;
  float* dxr = dx + row * dim;
  float dot = 0;
  for (int64_t j = lane; j < dim; j += 32) dot += xr[j] * dyr[j];
  const float inverse = 1.0f / norms[row];
  const float y_dot_dy = warp_sum(dot) * inverse;
  for (int64_t j = lane; j < dim; j += 32) {
    const float g = (dyr[j] - xr[j] * inverse * y_dot_dy) * inverse;
    dxr[j] = accumulate ? dxr[j] + g : g;
  }
}

unsigned blocks_for_rows(int64_t rows) { return unsigned((rows + kWarpsPerBlock - 1) / kWarpsPerBlock); }
}  // namespace

void l2norm_forward(Context& ctx, const Tensor& x, Tensor& y, Tensor& norms) {
  const int64_t rows = x.size(0), dim = x.size(1);
  if (rows == 0) return;
  const unsigned blocks = blocks_for_rows(rows);
  if (y.dtype() == DType::BF16) {
    launch(l2norm_forward_kernel<bf16>, blocks, 32 * kWarpsPerBlock, 0, cuda_stream(ctx), x.data<float>(),
           y.data<bf16>(), norms.data<float>(), rows, dim);
  } else {
    launch(l2norm_forward_kernel<float>, blocks, 32 * kWarpsPerBlock, 0, cuda_stream(ctx), x.data<float>(),
           y.data<float>(), norms.data<float>(), rows, dim);
  }
}

void l2norm_backward(Context& ctx, const Tensor& x, const Tensor& norms, const Tensor& dy, Tensor& dx, bool accumulate) {
  const int64_t rows = x.size(0), dim = x.size(1);
  if (rows == 0) return;
  launch(l2norm_backward_kernel, blocks_for_rows(rows), 32 * kWarpsPerBlock, 0, cuda_stream(ctx), x.data<float>(),
         norms.data<float>(), dy.data<float>(), dx.data<float>(), rows, dim, accumulate);
}

}  // namespace cuface::cuda
