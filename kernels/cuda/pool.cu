// CUDA pooling, NHWC: one thread per output (or input) element with the channel index fastest, so a
// warp reads and writes 32 consecutive channels (coalesced). Arithmetic in f32 for f32 and bf16
// tensors, in the same order as the CPU twins (kernels/cpu/pool.cpp), so f32 results match bitwise.
// Each thread splits its element index into (n, h, w, c) with divisions: in 32-bit arithmetic (index
// type I = int) whenever the tensors have fewer than 2^30 elements, as they practically always do; a
// 64-bit division costs several times as much.
#include <cmath>

#include "engine/cuda_context.h"
#include "engine/cuda_launch.h"
#include "kernels/cuda/channels.cuh"
#include "kernels/pool.h"

namespace cuface::cuda {

namespace {
constexpr int kBlock = 256;

template <class I>
struct PoolDims {
  I n, h, w, c, oh, ow;
  I kernel, stride, pad;
};

template <class I>
PoolDims<I> pool_dims(const Tensor& input, const Tensor& output, const Pool2dGeometry& g) {
  return {I(input.size(0)),  I(input.size(1)), I(input.size(2)), I(input.size(3)), I(output.size(1)),
          I(output.size(2)), I(g.kernel),      I(g.stride),      I(g.padding)};
}

template <class T, class I>
__global__ void max_pool_forward_kernel(const T* x, T* y, int32_t* argmax, PoolDims<I> d, I total) {
  for (I i = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x); i < total; i += I(gridDim.x) * I(blockDim.x)) {
    const I c = i % d.c, ow = (i / d.c) % d.ow, oh = (i / (d.c * d.ow)) % d.oh, n = i / (d.c * d.ow * d.oh);
    const I h0 = oh * d.stride - d.pad, w0 = ow * d.stride - d.pad;
    const I kh_begin = h0 < 0 ? -h0 : 0, kh_end = d.kernel < d.h - h0 ? d.kernel : d.h - h0;
    const I kw_begin = w0 < 0 ? -w0 : 0, kw_end = d.kernel < d.w - w0 ? d.kernel : d.w - w0;
    float best = -INFINITY;
    int32_t winner = int32_t((h0 + kh_begin) * d.w + w0 + kw_begin);
    for (I kh = kh_begin; kh < kh_end; ++kh)
      for (I kw = kw_begin; kw < kw_end; ++kw) {
        const float v = as_float(x[((n * d.h + h0 + kh) * d.w + w0 + kw) * d.c + c]);
        if (v > best || isnan(v)) {
          best = v;
          winner = int32_t((h0 + kh) * d.w + w0 + kw);
        }
      }
    y[i] = from_float<T>(best);
    argmax[i] = winner;
  }
}

template <class T, class I>
__global__ void max_pool_backward_kernel(const T* dy, const int32_t* argmax, T* dx, PoolDims<I> d, I total) {
  for (I i = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x); i < total; i += I(gridDim.x) * I(blockDim.x)) {
    const I c = i % d.c, iw = (i / d.c) % d.w, ih = (i / (d.c * d.w)) % d.h, n = i / (d.c * d.w * d.h);
    const int32_t position = int32_t(ih * d.w + iw);
    // The windows covering (ih, iw): oh * stride - pad <= ih <= oh * stride - pad + kernel - 1.
    const I oh_first = max(I(0), (ih + d.pad - d.kernel + d.stride) / d.stride);
    const I oh_last = min(d.oh - 1, (ih + d.pad) / d.stride);
    const I ow_first = max(I(0), (iw + d.pad - d.kernel + d.stride) / d.stride);
    const I ow_last = min(d.ow - 1, (iw + d.pad) / d.stride);
    float sum = 0.0f;
    for (I oh = oh_first; oh <= oh_last; ++oh)
      for (I ow = ow_first; ow <= ow_last; ++ow) {
        const I j = ((n * d.oh + oh) * d.ow + ow) * d.c + c;
        sum += argmax[j] == position ? as_float(dy[j]) : 0.0f;
      }
    dx[i] = from_float<T>(sum);
  }
}

template <class T, class I>
__global__ void global_avg_pool_forward_kernel(const T* x, T* y, I pixels, I channels, I total) {
  for (I i = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x); i < total; i += I(gridDim.x) * I(blockDim.x)) {
    const I n = i / channels, c = i % channels;  // i = n * channels + c
    float sum = 0.0f;
    for (I p = 0; p < pixels; ++p) sum += as_float(x[(n * pixels + p) * channels + c]);
    y[i] = from_float<T>(sum / float(pixels));
  }
}

template <class T, class I>
__global__ void global_avg_pool_backward_kernel(const T* dy, T* dx, I pixels, I channels, float scale, I total) {
  for (I i = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x); i < total; i += I(gridDim.x) * I(blockDim.x)) {
    const I c = i % channels, n = i / (channels * pixels);
    dx[i] = from_float<T>(as_float(dy[n * channels + c]) * scale);
  }
}

// Runs `launch(T{}, I{})` with the tensors' element type T and the index type I: int when every
// element index of `a` and `b` fits 30 bits (an index plus the grid stride, < 2^27, then stays below
// 2^31), else int64_t.
template <class Launch>
void with_types(const Tensor& a, const Tensor& b, Launch launch) {
  const bool narrow = a.numel() < (int64_t(1) << 30) && b.numel() < (int64_t(1) << 30);
  auto with_index = [&](auto element) {
    if (narrow)
      launch(element, int{});
    else
      launch(element, int64_t{});
  };
  if (a.dtype() == DType::BF16)
    with_index(bf16{});
  else
    with_index(float{});
}
}  // namespace

void max_pool2d_forward(Context& ctx, const Tensor& x, Tensor& y, Tensor& argmax, const Pool2dGeometry& geometry) {
  const int64_t total = y.numel();
  if (total == 0) return;
  with_types(x, y, [&](auto element, auto index) {
    using T = decltype(element);
    using I = decltype(index);
    launch(max_pool_forward_kernel<T, I>, grid_for(total, kBlock), kBlock, 0, cuda_stream(ctx), x.data<T>(),
           y.data<T>(), argmax.data<int32_t>(), pool_dims<I>(x, y, geometry), I(total));
  });
}

void max_pool2d_backward(Context& ctx, const Tensor& dy, const Tensor& argmax, Tensor& dx,
                         const Pool2dGeometry& geometry) {
  const int64_t total = dx.numel();
  if (total == 0) return;
  with_types(dx, dy, [&](auto element, auto index) {
    using T = decltype(element);
    using I = decltype(index);
    launch(max_pool_backward_kernel<T, I>, grid_for(total, kBlock), kBlock, 0, cuda_stream(ctx), dy.data<T>(),
           argmax.data<int32_t>(), dx.data<T>(), pool_dims<I>(dx, dy, geometry), I(total));
  });
}

void global_avg_pool_forward(Context& ctx, const Tensor& x, Tensor& y) {
  const int64_t total = y.numel();
  if (total == 0) return;
  with_types(x, y, [&](auto element, auto index) {
    using T = decltype(element);
    using I = decltype(index);
    launch(global_avg_pool_forward_kernel<T, I>, grid_for(total, kBlock), kBlock, 0, cuda_stream(ctx), x.data<T>(),
           y.data<T>(), I(x.size(1) * x.size(2)), I(x.size(3)), I(total));
  });
}

void global_avg_pool_backward(Context& ctx, const Tensor& dy, Tensor& dx) {
  const int64_t total = dx.numel();
  if (total == 0) return;
  const int64_t pixels = dx.size(1) * dx.size(2);
  with_types(dx, dy, [&](auto element, auto index) {
    using T = decltype(element);
    using I = decltype(index);
    launch(global_avg_pool_backward_kernel<T, I>, grid_for(total, kBlock), kBlock, 0, cuda_stream(ctx), dy.data<T>(),
           dx.data<T>(), I(pixels), I(dx.size(3)), 1.0f / float(pixels), I(total));
  });
}

}  // namespace cuface::cuda
