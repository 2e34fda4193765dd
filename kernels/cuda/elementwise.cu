// CUDA element-wise kernels: grid-stride loops on the context's stream; the CPU twins are in
// kernels/cpu/elementwise.cpp.
#include "engine/cuda_context.h"
#include "engine/cuda_launch.h"
#include "kernels/elementwise.h"

namespace cuface::cuda {

namespace {
constexpr int kBlock = 256;

__global__ void fill_kernel(float* y, float value, int64_t n) {
  CUFACE_KERNEL_LOOP(i, n) y[i] = value;
}
__global__ void axpy_kernel(float alpha, const float* x, float* y, int64_t n) {
  CUFACE_KERNEL_LOOP(i, n) y[i] += alpha * x[i];
}
__global__ void scale_kernel(float alpha, float* y, int64_t n) {
  CUFACE_KERNEL_LOOP(i, n) y[i] *= alpha;
}
__global__ void add_kernel(const float* a, const float* b, float* y, int64_t n) {
  CUFACE_KERNEL_LOOP(i, n) y[i] = a[i] + b[i];
}
__global__ void add_bf16_kernel(const bf16* a, const bf16* b, bf16* y, int64_t n) {
  CUFACE_KERNEL_LOOP(i, n) y[i] = to_bf16(to_float(a[i]) + to_float(b[i]));
}
__device__ inline float load_as_float(const void* p, DType dtype, int64_t i) {
  if (dtype == DType::F32) return static_cast<const float*>(p)[i];
  if (dtype == DType::BF16) return to_float(static_cast<const bf16*>(p)[i]);
  return to_float(static_cast<const f16*>(p)[i]);
}
__global__ void cast_kernel(const void* x, DType x_dtype, void* y, DType y_dtype, int64_t n) {
  CUFACE_KERNEL_LOOP(i, n) {
    float v = load_as_float(x, x_dtype, i);
    if (y_dtype == DType::F32) static_cast<float*>(y)[i] = v;
    else if (y_dtype == DType::BF16) static_cast<bf16*>(y)[i] = to_bf16(v);
    else static_cast<f16*>(y)[i] = to_f16(v);
  }
}
}  // namespace

void fill(Context& ctx, Tensor& y, float value) {
  if (y.numel() == 0) return;
  if (value == 0.0f || y.dtype() != DType::F32) {
    CUFACE_CHECK(value == 0.0f, "fill: non-zero fill needs an f32 tensor");
    CUDA_CHECK(cudaMemsetAsync(y.raw(), 0, y.bytes(), cuda_stream(ctx)));
    return;
  }
  launch(fill_kernel, grid_for(y.numel(), kBlock), kBlock, 0, cuda_stream(ctx), y.data<float>(), value, y.numel());
}

void copy(Context& ctx, const Tensor& x, Tensor& y) {
  if (x.raw() == y.raw() || y.bytes() == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(y.raw(), x.raw(), y.bytes(), cudaMemcpyDeviceToDevice, cuda_stream(ctx)));
}

void axpy(Context& ctx, float alpha, const Tensor& x, Tensor& y) {
  if (y.numel() == 0) return;
  launch(axpy_kernel, grid_for(y.numel(), kBlock), kBlock, 0, cuda_stream(ctx), alpha, x.data<float>(), y.data<float>(),
         y.numel());
}

void scale(Context& ctx, float alpha, Tensor& y) {
  if (y.numel() == 0) return;
  launch(scale_kernel, grid_for(y.numel(), kBlock), kBlock, 0, cuda_stream(ctx), alpha, y.data<float>(), y.numel());
}

void add(Context& ctx, const Tensor& a, const Tensor& b, Tensor& y) {
  if (y.numel() == 0) return;
  if (y.dtype() == DType::BF16) {  // a ResNet block's input gradient under bf16 (face/model/resnet.cpp)
    launch(add_bf16_kernel, grid_for(y.numel(), kBlock), kBlock, 0, cuda_stream(ctx), a.data<bf16>(), b.data<bf16>(),
           y.data<bf16>(), y.numel());
    return;
  }
  launch(add_kernel, grid_for(y.numel(), kBlock), kBlock, 0, cuda_stream(ctx), a.data<float>(), b.data<float>(),
         y.data<float>(), y.numel());
}

void cast(Context& ctx, const Tensor& x, Tensor& y) {
  // The kernel reads anything that is not f32 or bf16 as f16: reject the other dtypes, as the CPU twin does.
  const auto float_like = [](const Tensor& t) {
    return t.dtype() == DType::F32 || t.dtype() == DType::BF16 || t.dtype() == DType::F16;
  };
  CUFACE_CHECK(float_like(x) && float_like(y), "cast: only f32, bf16 and f16 convert, got " + x.str() + " and " + y.str());
  if (y.numel() == 0) return;
  launch(cast_kernel, grid_for(y.numel(), kBlock), kBlock, 0, cuda_stream(ctx), x.raw(), x.dtype(), y.raw(), y.dtype(),
         y.numel());
}

}  // namespace cuface::cuda
