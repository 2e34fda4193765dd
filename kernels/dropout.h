// Inverted dropout with a counter-based mask (engine/philox.h):
//
//   y[i] = keep(i) ? x[i] / (1 - p) : 0,    keep(i) = u_i >= p,
//   u_i  = number i of the Philox stream (seed, subsequence = step), as a float in [0, 1)
//        = u32_to_unit_float(philox_block(seed, step, i / 4).v[i % 4])
//
// so an element survives with probability 1 - p (to within 2^-24) and the expectation of y is x.
// The mask is a pure function of (seed, step, element index): the CPU and CUDA kernels draw the
// same mask bit for bit, however their threads are laid out, and the same step always draws the
// same mask. Nothing is stored between forward and backward: backward is this same call on dy
// (dx = dy * keep / (1 - p)); recomputing 10 Philox rounds per 4 elements is cheaper than writing
// and reading a mask. f32, or bf16 on CUDA; y may alias x. 0 <= p < 1.
//
// `step` is a number, or a number plus a device counter read when the kernel runs (a step replayed from
// a CUDA graph; kernels/random_step.h).
#pragma once
#include <cstdint>

#include "kernels/dispatch.h"
#include "kernels/random_step.h"

namespace cuface {

namespace cpu {
void dropout(Context& ctx, const Tensor& x, Tensor& y, float p, uint64_t seed, const RandomStep& step);
}
namespace cuda {
void dropout(Context& ctx, const Tensor& x, Tensor& y, float p, uint64_t seed, const RandomStep& step);
}

void check_dropout(const Tensor& x, const Tensor& y, float p);

inline void dropout(Context& ctx, const Tensor& x, Tensor& y, float p, uint64_t seed, const RandomStep& step) {
  check_dropout(x, y, p);
  check_random_step(step, x, "dropout");
  CUFACE_DISPATCH(y, cpu::dropout(ctx, x, y, p, seed, step), cuda::dropout(ctx, x, y, p, seed, step));
}

}  // namespace cuface
