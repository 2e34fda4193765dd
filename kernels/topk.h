// Streaming top-k: the k best columns of each row of a score matrix that arrives one block of columns
// at a time, so a search never holds more than one block of scores (face identification: the best
// gallery rows for each probe, face/eval/identification.h).
//
//   best_score [rows, k] f32 and best_index [rows, k] i32 are each row's k best (score, column)
//   seen so far, best first: the higher score first and, among equal scores, the lower column; this
//   is the order of a stable sort by descending score. Slots not yet filled (fewer than k columns
//   seen) hold (-inf, -1) at the end of the row.
//
//   clear_top_k:  every slot unfilled.
//   merge_top_k:  merges scores [rows, n], whose column j is column first_column + j. Blocks come in
//                 increasing column order (every listed column is below first_column), so an equal
//                 score never displaces a listed one and the stable order holds across blocks.
//
// A score enters only when it is above -inf (and above the k-th best once k are listed): NaN and -inf
// are never listed. Columns are 32-bit (at most 2^31 - 1 of them).
#pragma once
#include "kernels/dispatch.h"

namespace cuface {

namespace cpu {
void clear_top_k(Context& ctx, Tensor& best_score, Tensor& best_index);
void merge_top_k(Context& ctx, const Tensor& scores, int64_t first_column, Tensor& best_score, Tensor& best_index);
}  // namespace cpu

namespace cuda {
void clear_top_k(Context& ctx, Tensor& best_score, Tensor& best_index);
void merge_top_k(Context& ctx, const Tensor& scores, int64_t first_column, Tensor& best_score, Tensor& best_index);
}  // namespace cuda

// Shapes, dtypes and devices of the lists (and of `scores` when given); throws naming `what`.
void check_top_k(const Tensor* scores, const Tensor& best_score, const Tensor& best_index, const char* what);

inline void clear_top_k(Context& ctx, Tensor& best_score, Tensor& best_index) {
  check_top_k(nullptr, best_score, best_index, "clear_top_k");
  CUFACE_DISPATCH(best_score, cpu::clear_top_k(ctx, best_score, best_index),
                  cuda::clear_top_k(ctx, best_score, best_index));
}

inline void merge_top_k(Context& ctx, const Tensor& scores, int64_t first_column, Tensor& best_score,
                        Tensor& best_index) {
  check_top_k(&scores, best_score, best_index, "merge_top_k");
  CUFACE_CHECK(first_column >= 0 && first_column + scores.size(1) <= int64_t(INT32_MAX),
               "merge_top_k: columns beyond 2^31 - 1");
  CUFACE_DISPATCH(best_score, cpu::merge_top_k(ctx, scores, first_column, best_score, best_index),
                  cuda::merge_top_k(ctx, scores, first_column, best_score, best_index));
}

}  // namespace cuface
