// CPU streaming top-k: each row's list is kept sorted and a score is inserted by shifting the worse
// ones down. After the first blocks almost every score is below the k-th best, so the common case
// is one comparison per score. Rows run on the OpenMP threads.
#include <cmath>
#include <limits>

#include "kernels/topk.h"

namespace cuface::cpu {

void clear_top_k(Context&, Tensor& best_score, Tensor& best_index) {
  float* score = best_score.data<float>();
  int32_t* index = best_index.data<int32_t>();
  for (int64_t i = 0; i < best_score.numel(); ++i) {
    score[i] = -std::numeric_limits<float>::infinity();
    index[i] = -1;
  }
}

void merge_top_k(Context&, const Tensor& scores, int64_t first_column, Tensor& best_score, Tensor& best_index) {
  const int64_t rows = scores.size(0), n = scores.size(1), k = best_score.size(1);
  const float* all = scores.data<float>();
  // Rows are taken a few at a time from a shared counter, so a thread that loses its core to another
  // process delays a few rows, not a fixed half of them.
#pragma omp parallel for schedule(dynamic, 8) if (rows * n > (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = all + r * n;
    float* score = best_score.data<float>() + r * k;
    int32_t* index = best_index.data<int32_t>() + r * k;
    // An unfilled last slot holds -inf, so "above the last slot" is the entry rule in both states.
    float entry = score[k - 1];
    for (int64_t j = 0; j < n; ++j) {
      const float s = row[j];
      if (!(s > entry)) continue;
      int64_t slot = k - 1;
      for (; slot > 0 && score[slot - 1] < s; --slot) {  // strictly: an equal score stays ahead
        score[slot] = score[slot - 1];
        index[slot] = index[slot - 1];
      }
      score[slot] = s;
      index[slot] = int32_t(first_column + j);
      entry = score[k - 1];
    }
  }
}

}  // namespace cuface::cpu
