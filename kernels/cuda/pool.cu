// CUDA pooling, NHWC: one thread per output (or input) element with the channel index fastest, so a
// warp reads and writes 32 consecutive channels (coalesced). Arithmetic in f32 for f32 and bf16
// tensors, in the same order as the CPU twins (kernels/cpu/pool.cpp), so f32 results match bitwise.
#include <cmath>

#include "engine/cuda_context.h"
#include "engine/cuda_launch.h"
#include "kernels/cuda/channels.cuh"
#include "kernels/pool.h"

namespace cuface::cuda {

namespace {
constexpr int kBlock = 256;

struct PoolDims {
  int64_t n, h, w, c, oh, ow;
  int64_t kernel, stride, pad;
};

PoolDims pool_dims(const Tensor& input, const Tensor& output, const Pool2dGeometry& g) {
  return {input.size(0),  input.size(1), input.size(2), input.size(3), output.size(1),
          output.size(2), g.kernel,      g.stride,      g.padding};
}

template <class T>
__global__ void max_pool_forward_kernel(const T* x, T* y, int32_t* argmax, PoolDims d, int64_t total) {
  CUFACE_KERNEL_LOOP(i, total) {
    const int64_t c = i % d.c, ow = (i / d.c) % d.ow, oh = (i / (d.c * d.ow)) % d.oh, n = i / (d.c * d.ow * d.oh);
    const int64_t h0 = oh * d.stride - d.pad, w0 = ow * d.stride - d.pad;
    const int64_t kh_begin = h0 < 0 ? -h0 : 0, kh_end = d.kernel < d.h - h0 ? d.kernel : d.h - h0;
    const int64_t kw_begin = w0 < 0 ? -w0 : 0, kw_end = d.kernel < d.w - w0 ? d.kernel : d.w - w0;
    float best = -INFINITY;
    int32_t winner = int32_t((h0 + kh_begin) * d.w + w0 + kw_begin);
    for (int64_t kh = kh_begin; kh < kh_end; ++kh)
      for (int64_t kw = kw_begin; kw < kw_end; ++kw) {
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

template <class T>
__global__ void max_pool_backward_kernel(const T* dy, const int32_t* argmax, T* dx, PoolDims d, int64_t total) {
  CUFACE_KERNEL_LOOP(i, total) {
    const int64_t c = i % d.c, iw = (i / d.c) % d.w, ih = (i / (d.c * d.w)) % d.h, n = i / (d.c * d.w * d.h);
    const int32_t position = int32_t(ih * d.w + iw);
    // The windows covering (ih, iw): oh * stride - pad <= ih <= oh * stride - pad + kernel - 1.
    const int64_t oh_first = max(int64_t(0), (ih + d.pad - d.kernel + d.stride) / d.stride);
    const int64_t oh_last = min(d.oh - 1, (ih + d.pad) / d.stride);
    const int64_t ow_first = max(int64_t(0), (iw + d.pad - d.kernel + d.stride) / d.stride);
    const int64_t ow_last = min(d.ow - 1, (iw + d.pad) / d.stride);
    float sum = 0.0f;
    for (int64_t oh = oh_first; oh <= oh_last; ++oh)
      for (int64_t ow = ow_first; ow <= ow_last; ++ow) {
        const int64_t j = ((n * d.oh + oh) * d.ow + ow) * d.c + c;
        sum += argmax[j] == position ? as_float(dy[j]) : 0.0f;
      }
    dx[i] = from_float<T>(sum);
  }
}

template <class T>
__global__ void global_avg_pool_forward_kernel(const T* x, T* y, int64_t pixels, int64_t channels, int64_t total) {
  CUFACE_KERNEL_LOOP(i, total) {  // i = n * channels + c
    const int64_t n = i / channels, c = i % channels;
    float sum = 0.0f;
    for (int64_t p = 0; p < pixels; ++p) sum += as_float(x[(n * pixels + p) * channels + c]);
    y[i] = from_float<T>(sum / float(pixels));
  }
}

template <class T>
__global__ void global_avg_pool_backward_kernel(const T* dy, T* dx, int64_t pixels, int64_t channels, float scale,
                                                int64_t total) {
  CUFACE_KERNEL_LOOP(i, total) {
    const int64_t c = i % channels, n = i / (channels * pixels);
    dx[i] = from_float<T>(as_float(dy[n * channels + c]) * scale);
  }
}

// Runs `launch(T*)` with the tensors' element type.
template <class Launch>
void with_type(const Tensor& t, Launch launch) {
  if (t.dtype() == DType::BF16)
    launch(bf16{});
  else
    launch(float{});
}
}  // namespace

void max_pool2d_forward(Context& ctx, const Tensor& x, Tensor& y, Tensor& argmax, const Pool2dGeometry& geometry) {
  const int64_t total = y.numel();
  if (total == 0) return;
  const PoolDims d = pool_dims(x, y, geometry);
  with_type(x, [&](auto zero) {
    using T = decltype(zero);
    launch(max_pool_forward_kernel<T>, grid_for(total, kBlock), kBlock, 0, cuda_stream(ctx), x.data<T>(), y.data<T>(),
           argmax.data<int32_t>(), d, total);
  });
}

void max_pool2d_backward(Context& ctx, const Tensor& dy, const Tensor& argmax, Tensor& dx,
                         const Pool2dGeometry& geometry) {
  const int64_t total = dx.numel();
  if (total == 0) return;
  const PoolDims d = pool_dims(dx, dy, geometry);
  with_type(dx, [&](auto zero) {
    using T = decltype(zero);
    launch(max_pool_backward_kernel<T>, grid_for(total, kBlock), kBlock, 0, cuda_stream(ctx), dy.data<T>(),
           argmax.data<int32_t>(), dx.data<T>(), d, total);
  });
}

void global_avg_pool_forward(Context& ctx, const Tensor& x, Tensor& y) {
  const int64_t total = y.numel();
  if (total == 0) return;
  with_type(x, [&](auto zero) {
    using T = decltype(zero);
    launch(global_avg_pool_forward_kernel<T>, grid_for(total, kBlock), kBlock, 0, cuda_stream(ctx), x.data<T>(),
           y.data<T>(), x.size(1) * x.size(2), x.size(3), total);
  });
}

void global_avg_pool_backward(Context& ctx, const Tensor& dy, Tensor& dx) {
  const int64_t total = dx.numel();
  if (total == 0) return;
  const int64_t pixels = dx.size(1) * dx.size(2);
  with_type(dx, [&](auto zero) {
    using T = decltype(zero);
    launch(global_avg_pool_backward_kernel<T>, grid_for(total, kBlock), kBlock, 0, cuda_stream(ctx), dy.data<T>(),
           dx.data<T>(), pixels, dx.size(3), 1.0f / float(pixels), total);
  });
}

}  // namespace cuface::cuda
