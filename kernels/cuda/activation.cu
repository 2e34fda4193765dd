// CUDA activations (the definitions are in kernels/activation.h; the CPU twins are in
// kernels/cpu/activation.cpp). Element-wise grid-stride kernels, templated on f32/bf16 storage with
// f32 arithmetic. PReLU's backward computes dx and the per-slab slope-gradient partials in one pass
// over the tensor (kernels/cuda/channels.cuh), then sums the partials per channel in slab order.
#include "engine/cuda_context.h"
#include "engine/cuda_launch.h"
#include "kernels/activation.h"
#include "kernels/cuda/channels.cuh"

namespace cuface::cuda {

namespace {
constexpr int kBlock = 256;

template <class T>
__global__ void relu_forward_kernel(const T* x, T* y, int64_t n) {
  CUFACE_KERNEL_LOOP(i, n) y[i] = from_float<T>(relu_value(as_float(x[i])));
}

template <class T>
__global__ void relu_backward_kernel(const T* y, const T* dy, T* dx, int64_t n) {
  CUFACE_KERNEL_LOOP(i, n) dx[i] = as_float(y[i]) > 0.0f ? dy[i] : from_float<T>(0.0f);
}

template <class T>
__global__ void add_relu_kernel(const T* a, const T* b, T* y, int64_t n) {
  CUFACE_KERNEL_LOOP(i, n) y[i] = from_float<T>(relu_value(as_float(a[i]) + as_float(b[i])));
}

template <class T>
__global__ void prelu_forward_kernel(const T* x, const float* slope, T* y, int64_t n, int channels) {
  for_each_element(n, channels, [&](int64_t i, int c) {
    const float v = as_float(x[i]);
    y[i] = from_float<T>(v > 0.0f ? v : slope[c] * v);
  });
}

// dx for every element this thread visits, and (partial != null) its slab's sum of dy * min(x, 0):
// partial[slab * C + c].
template <class T>
__global__ void prelu_backward_kernel(const T* x, const float* slope, const T* dy, T* dx, int64_t rows, int channels,
                                      float* partial) {
  const int c = blockIdx.x * kReduceChannels + threadIdx.x;
  float sum[1] = {0.0f};
  if (c < channels) {
    const float a = slope[c];
    for (int64_t row = blockIdx.y * int64_t(kReduceRows) + threadIdx.y; row < rows;
         row += int64_t(gridDim.y) * kReduceRows) {
      const int64_t i = row * channels + c;
      const float v = as_float(x[i]), g = as_float(dy[i]);
      sum[0] += g * negative_part(v);
      dx[i] = from_float<T>(v > 0.0f ? g : a * g);
    }
  }
  if (!partial) return;  // uniform over the grid, so no thread is left waiting at a barrier
  sum_over_block_rows<1>(sum);
  if (threadIdx.y == 0 && c < channels) partial[int64_t(blockIdx.y) * channels + c] = sum[0];
}

__global__ void prelu_slope_finalize_kernel(const float* partial, int slabs, int channels, float* dslope) {
  CUFACE_KERNEL_LOOP(c, channels) {
    double sum = 0;
    for (int s = 0; s < slabs; ++s) sum += partial[int64_t(s) * channels + c];
    dslope[c] += float(sum);
  }
}

// Calls body(T{}) with T = float or bf16, as the tensor's dtype says; body launches the kernel for T.
template <class Body>
void with_element_type(const Tensor& t, Body body) {
  if (t.dtype() == DType::BF16)
    body(bf16{});
  else
    body(float{});
}
}  // namespace

void relu_forward(Context& ctx, const Tensor& x, Tensor& y) {
  const int64_t n = y.numel();
  if (n == 0) return;
  with_element_type(x, [&](auto tag) {
    using T = decltype(tag);
    launch(relu_forward_kernel<T>, grid_for(n, kBlock), kBlock, 0, cuda_stream(ctx), x.data<T>(), y.data<T>(), n);
  });
}

void relu_backward(Context& ctx, const Tensor& y, const Tensor& dy, Tensor& dx) {
  const int64_t n = dx.numel();
  if (n == 0) return;
  with_element_type(y, [&](auto tag) {
    using T = decltype(tag);
    launch(relu_backward_kernel<T>, grid_for(n, kBlock), kBlock, 0, cuda_stream(ctx), y.data<T>(), dy.data<T>(),
           dx.data<T>(), n);
  });
}

void add_relu(Context& ctx, const Tensor& a, const Tensor& b, Tensor& y) {
  const int64_t n = y.numel();
  if (n == 0) return;
  with_element_type(y, [&](auto tag) {
    using T = decltype(tag);
    launch(add_relu_kernel<T>, grid_for(n, kBlock), kBlock, 0, cuda_stream(ctx), a.data<T>(), b.data<T>(), y.data<T>(),
           n);
  });
}

void prelu_forward(Context& ctx, const Tensor& x, const Tensor& slope, Tensor& y) {
  const int64_t n = y.numel();
  if (n == 0) return;
  with_element_type(x, [&](auto tag) {
    using T = decltype(tag);
    launch(prelu_forward_kernel<T>, grid_for(n, kBlock), kBlock, 0, cuda_stream(ctx), x.data<T>(), slope.data<float>(),
           y.data<T>(), n, int(x.size(-1)));
  });
}

void prelu_backward(Context& ctx, const Tensor& x, const Tensor& slope, const Tensor& dy, Tensor& dx, Tensor& dslope) {
  const int channels = int(x.size(-1));
  const int64_t rows = x.numel() / channels;
  if (rows == 0) return;
  const ChannelReduceGrid reduce = channel_reduce_grid(ctx, rows, channels);
  float* partial =
      dslope.defined()
          ? static_cast<float*>(ctx.cuda().workspace_bytes(sizeof(float) * size_t(reduce.slabs) * size_t(channels)))
          : nullptr;
  cudaStream_t stream = cuda_stream(ctx);
  with_element_type(x, [&](auto tag) {
    using T = decltype(tag);
    launch(prelu_backward_kernel<T>, reduce.grid, reduce.block, 0, stream, x.data<T>(), slope.data<float>(),
           dy.data<T>(), dx.data<T>(), rows, channels, partial);
  });
  if (!partial) return;
  launch(prelu_slope_finalize_kernel, grid_for(channels, kBlock), kBlock, 0, stream, partial, reduce.slabs, channels,
         dslope.data<float>());
}

}  // namespace cuface::cuda
