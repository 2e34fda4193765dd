// CUDA image input kernels; the CPU twin is kernels/cpu/image.cpp. Memory-bound: each thread reads
// four bytes at once (one 32-bit load) and writes four values.
#include "engine/cuda_context.h"
#include "engine/cuda_launch.h"
#include "kernels/image.h"

namespace cuface::cuda {

namespace {
constexpr int kBlock = 256;

__device__ inline void store(float* y, int64_t i, float v) { y[i] = v; }
__device__ inline void store(bf16* y, int64_t i, float v) { y[i] = to_bf16(v); }

// The first n4 groups of four as 32-bit loads (x 4-byte aligned), then the rest element by element.
template <class T>
__global__ void normalise_u8_kernel(const uint8_t* x, T* y, int64_t n, int64_t n4, float mean, float scale) {
  const uchar4* x4 = reinterpret_cast<const uchar4*>(x);
  CUFACE_KERNEL_LOOP(i, n4) {
    const uchar4 v = x4[i];
    store(y, 4 * i + 0, (float(v.x) - mean) * scale);
    store(y, 4 * i + 1, (float(v.y) - mean) * scale);
    store(y, 4 * i + 2, (float(v.z) - mean) * scale);
    store(y, 4 * i + 3, (float(v.w) - mean) * scale);
  }
  CUFACE_KERNEL_LOOP(j, n - 4 * n4) store(y, 4 * n4 + j, (float(x[4 * n4 + j]) - mean) * scale);
}
}  // namespace

void normalise_u8(Context& ctx, const Tensor& x, Tensor& y, float mean, float scale) {
  const int64_t n = x.numel();
  if (n == 0) return;
  const uint8_t* in = x.data<uint8_t>();
  const int64_t n4 = reinterpret_cast<uintptr_t>(in) % 4 == 0 ? n / 4 : 0;  // a row slice may be unaligned
  const int grid = grid_for(n4 > 0 ? n4 : n, kBlock);
  if (y.dtype() == DType::F32)
    launch(normalise_u8_kernel<float>, grid, kBlock, 0, cuda_stream(ctx), in, y.data<float>(), n, n4, mean, scale);
  else
    launch(normalise_u8_kernel<bf16>, grid, kBlock, 0, cuda_stream(ctx), in, y.data<bf16>(), n, n4, mean, scale);
}

}  // namespace cuface::cuda
