// Random fills from the Philox counter RNG (engine/philox.h). Both read the stream (seed,
// subsequence) in order, so a host loop over one Philox(seed, subsequence) reproduces the tensor:
//   fill_uniform: y[i] = fma(u, hi - lo, lo) with u = next_float(), number i of the stream.
//                 CPU, CUDA and the host loop agree bit for bit.
//   fill_normal:  y[i] = fma(stddev, next_normal(), mean), numbers 2e and 2e+1 of the stream, where
//                 e = first + i: a tensor filled from `first` on is rows of a larger fill (a rank's
//                 slice of a class-sharded head), drawn without the rest.
//                 CUDA's logf/cosf may differ from the host's in the last bits (a few 1e-7).
// f32 tensors only.
#pragma once
#include "kernels/dispatch.h"

namespace cuface {

namespace cpu {
void fill_uniform(Context& ctx, Tensor& y, uint64_t seed, uint64_t subsequence, float lo, float hi);
void fill_normal(Context& ctx, Tensor& y, uint64_t seed, uint64_t subsequence, float mean, float stddev,
                 uint64_t first);
}  // namespace cpu
namespace cuda {
void fill_uniform(Context& ctx, Tensor& y, uint64_t seed, uint64_t subsequence, float lo, float hi);
void fill_normal(Context& ctx, Tensor& y, uint64_t seed, uint64_t subsequence, float mean, float stddev,
                 uint64_t first);
}  // namespace cuda

inline void fill_uniform(Context& ctx, Tensor& y, uint64_t seed, uint64_t subsequence, float lo = 0.0f,
                         float hi = 1.0f) {
  CUFACE_CHECK(y.dtype() == DType::F32, "fill_uniform: needs an f32 tensor, got " + y.str());
  CUFACE_CHECK(lo <= hi, "fill_uniform: lo > hi");
  CUFACE_DISPATCH(y, cpu::fill_uniform(ctx, y, seed, subsequence, lo, hi),
                  cuda::fill_uniform(ctx, y, seed, subsequence, lo, hi));
}

inline void fill_normal(Context& ctx, Tensor& y, uint64_t seed, uint64_t subsequence, float mean = 0.0f,
                        float stddev = 1.0f, uint64_t first = 0) {
  CUFACE_CHECK(y.dtype() == DType::F32, "fill_normal: needs an f32 tensor, got " + y.str());
  CUFACE_CHECK(stddev >= 0, "fill_normal: negative standard deviation");
  CUFACE_DISPATCH(y, cpu::fill_normal(ctx, y, seed, subsequence, mean, stddev, first),
                  cuda::fill_normal(ctx, y, seed, subsequence, mean, stddev, first));
}

}  // namespace cuface
