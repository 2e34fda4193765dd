// Partial FC (An et al., "Partial FC: Training 10 Million Identities on a Single Machine", 2021): each
// step the margin head uses every class present in the batch (the positives) plus a uniformly random
// subset of the other classes, K = sample_rate * C centres in all, so the GEMMs and the [N, K] logits
// shrink by the sample rate.
//
// Selection, identical on both backends: class c gets the 64-bit key
//     c                                    if c is a positive,
//     2^63 + u_c * 2^31 + c                otherwise, u_c = number c (a u32) of the Philox stream (seed, step)
// (C < 2^31, so c fits below bit 31);
// the K smallest keys are the sample (all positives first, K >= N guarantees room for them, then the
// K - P negatives with the smallest random u, a uniform subset), and `index` lists the sampled classes
// in increasing class order, as InsightFace's PartialFC does (index.sort()). That order is why
// sample_rate = 1 (index = 0..C-1) reproduces the exact head bit for bit. Keys are unique, so the
// sample does not depend on how a backend sorts.
//
// Sharded (`cuface train --shard-classes --sample-rate r`, InsightFace's Partial FC proper): rank r
// samples among its own classes, the window [first, first + count) of the C (ClassWindow). The
// selection is the rule above on the window's classes, with c counted inside the window and u_c the
// number first + c of the stream, so every class draws the same u whoever holds it. Labels of the
// other ranks' classes are no positives here and map to K ("not among this rank's columns").
//
// `step` is a number, or a number plus a device counter read when the kernel runs (a step replayed from
// a CUDA graph; kernels/random_step.h).
#pragma once
#include "kernels/dispatch.h"
#include "kernels/random_step.h"

namespace cuface {

// K for C classes and N rows: ceil(sample_rate * C), at least N (room for every positive), at most C.
int64_t partial_fc_sample_count(int64_t classes, int64_t rows, float sample_rate);

// The classes one rank samples from: [first, first + count) of the label space (count -1: to the end).
struct ClassWindow {
  int64_t first = 0, count = -1;
};

namespace cpu {
void select_classes(Context& ctx, const Tensor& labels, int64_t classes, uint64_t seed, const RandomStep& step,
                    Tensor& index, Tensor& sampled_labels, ClassWindow window);
void gather_rows(Context& ctx, const Tensor& source, const Tensor& index, Tensor& destination);
void scatter_add_rows(Context& ctx, const Tensor& source, const Tensor& index, Tensor& destination);
}  // namespace cpu
namespace cuda {
void select_classes(Context& ctx, const Tensor& labels, int64_t classes, uint64_t seed, const RandomStep& step,
                    Tensor& index, Tensor& sampled_labels, ClassWindow window);
void gather_rows(Context& ctx, const Tensor& source, const Tensor& index, Tensor& destination);
void scatter_add_rows(Context& ctx, const Tensor& source, const Tensor& index, Tensor& destination);
}  // namespace cuda

// Returns the window with its count resolved.
ClassWindow check_select_classes(const Tensor& labels, int64_t classes, const Tensor& index,
                                 const Tensor& sampled_labels, ClassWindow window);
void check_row_index(const Tensor& rows, const Tensor& index, const Tensor& selected, const char* what);

// labels [N] i32 over C classes (-1 ignored) -> index [K] i32 (the sampled classes of the window,
// counted from its first, ascending), sampled_labels [N] i32 (the position of each label in index; -1
// stays -1; a label outside the window becomes K). On the GPU a label >= C cannot throw; it maps to K,
// which the unsharded margin kernel turns into a NaN loss.
inline void select_classes(Context& ctx, const Tensor& labels, int64_t classes, uint64_t seed,
                           const RandomStep& step, Tensor& index, Tensor& sampled_labels, ClassWindow window = {}) {
  window = check_select_classes(labels, classes, index, sampled_labels, window);
  check_random_step(step, labels, "select_classes");
  CUFACE_DISPATCH(labels, cpu::select_classes(ctx, labels, classes, seed, step, index, sampled_labels, window),
                  cuda::select_classes(ctx, labels, classes, seed, step, index, sampled_labels, window));
}

// destination[k] = source[index[k]] for source [R, D] f32, index [K] i32, destination [K, D].
inline void gather_rows(Context& ctx, const Tensor& source, const Tensor& index, Tensor& destination) {
  check_row_index(source, index, destination, "gather_rows");
  CUFACE_DISPATCH(source, cpu::gather_rows(ctx, source, index, destination),
                  cuda::gather_rows(ctx, source, index, destination));
}

// destination[index[k]] += source[k]; the indices must be distinct (select_classes' are).
inline void scatter_add_rows(Context& ctx, const Tensor& source, const Tensor& index, Tensor& destination) {
  check_row_index(destination, index, source, "scatter_add_rows");
  CUFACE_DISPATCH(source, cpu::scatter_add_rows(ctx, source, index, destination),
                  cuda::scatter_add_rows(ctx, source, index, destination));
}

}  // namespace cuface
