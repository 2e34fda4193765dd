// CUDA streaming top-k: one thread block per row; the CPU twin is kernels/cpu/topk.cpp.
//
// A block first counts the row's scores that beat its current k-th best. After the first blocks of a
// search that count is almost always zero and the row costs one coalesced read. Otherwise the new
// list is written slot by slot as a merge of the old list (kept in shared memory) with the block's
// candidates taken best first: the next candidate is found by a block-wide arg-max over the scores
// that come after the previous candidate in list order, so nothing is sorted or stored per score.
#include <climits>
#include <cmath>

#include "engine/cuda_context.h"
#include "engine/cuda_launch.h"
#include "kernels/topk.h"

namespace cuface::cuda {

namespace {
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// (s, c) comes before (t, d) in a list: higher score first, then the lower column.
__device__ inline bool before(float s, int32_t c, float t, int32_t d) { return s > t || (s == t && c < d); }

// The first of the two entries in list order, over a warp; lane 0 gets the warp's best.
__device__ inline void warp_best(float& s, int32_t& c) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float t = __shfl_down_sync(0xffffffffu, s, offset);
    const int32_t d = __shfl_down_sync(0xffffffffu, c, offset);
    if (before(t, d, s, c)) {
      s = t;
      c = d;
    }
  }
}

__global__ void clear_top_k_kernel(float* score, int32_t* index, int64_t n) {
  CUFACE_KERNEL_LOOP(i, n) {
    score[i] = -INFINITY;
    index[i] = -1;
  }
}

__global__ void merge_top_k_kernel(const float* scores, int64_t n, int32_t first_column, float* best_score,
                                   int32_t* best_index, int k) {
  CUFACE_DYNAMIC_SHARED(unsigned char, list_memory);
  float* old_score = reinterpret_cast<float*>(list_memory);
  int32_t* old_index = reinterpret_cast<int32_t*>(old_score + k);
  CUFACE_SHARED(int, entering);
  CUFACE_SHARED(float[kWarps], warp_score);
  CUFACE_SHARED(int32_t[kWarps], warp_column);
  CUFACE_SHARED(float, next_score);
  CUFACE_SHARED(int32_t, next_column);

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const float* row = scores + int64_t(blockIdx.x) * n;
  float* score = best_score + int64_t(blockIdx.x) * k;
  int32_t* index = best_index + int64_t(blockIdx.x) * k;
  for (int i = threadIdx.x; i < k; i += kThreads) {
    old_score[i] = score[i];
    old_index[i] = index[i];
  }
  if (threadIdx.x == 0) entering = 0;
  __syncthreads();

  const float last = old_score[k - 1];  // -inf while unfilled
  int mine = 0;
  for (int64_t j = threadIdx.x; j < n; j += kThreads) mine += row[j] > last ? 1 : 0;
  for (int offset = 16; offset > 0; offset >>= 1) mine += __shfl_down_sync(0xffffffffu, mine, offset);
  if (lane == 0 && mine > 0) atomicAdd(&entering, mine);
  __syncthreads();
  const int candidates = entering < k ? entering : k;  // at most k of them can enter
  if (candidates == 0) return;

  // Every thread takes the same branch: the decisions read shared values only.
  float previous_score = INFINITY;
  int32_t previous_column = -1;
  int taken = 0, old_next = 0;
  bool found = false;
  for (int slot = 0; slot < k; ++slot) {
    if (taken < candidates && !found) {
      // The best score above `last` that comes after the previous candidate.
      float s = -INFINITY;
      int32_t c = INT_MAX;
      for (int64_t j = threadIdx.x; j < n; j += kThreads) {
        const float x = row[j];
        const int32_t column = first_column + int32_t(j);
        const bool after_previous = x < previous_score || (x == previous_score && column > previous_column);
        if (x > last && after_previous && before(x, column, s, c)) {
          s = x;
          c = column;
        }
      }
      warp_best(s, c);
      if (lane == 0) {
        warp_score[warp] = s;
        warp_column[warp] = c;
      }
      __syncthreads();
      if (warp == 0) {
        s = lane < kWarps ? warp_score[lane] : -INFINITY;
        c = lane < kWarps ? warp_column[lane] : INT_MAX;
        warp_best(s, c);
        if (lane == 0) {
          next_score = s;
          next_column = c;
        }
      }
      __syncthreads();
      found = true;
    }
    const bool take_new =
        taken < candidates && before(next_score, next_column, old_score[old_next], old_index[old_next]);
    if (take_new) {
      if (threadIdx.x == 0) {
        score[slot] = next_score;
        index[slot] = next_column;
      }
      previous_score = next_score;
      previous_column = next_column;
      ++taken;
      found = false;
      __syncthreads();  // next_score is rewritten by the next search
    } else {
      if (threadIdx.x == 0) {
        score[slot] = old_score[old_next];
        index[slot] = old_index[old_next];
      }
      ++old_next;
    }
  }
}
}  // namespace

void clear_top_k(Context& ctx, Tensor& best_score, Tensor& best_index) {
  const int64_t n = best_score.numel();
  launch(clear_top_k_kernel, grid_for(n, 256), 256, 0, cuda_stream(ctx), best_score.data<float>(),
         best_index.data<int32_t>(), n);
}

void merge_top_k(Context& ctx, const Tensor& scores, int64_t first_column, Tensor& best_score, Tensor& best_index) {
  const int64_t rows = scores.size(0);
  const int k = int(best_score.size(1));
  const size_t list_bytes = size_t(k) * (sizeof(float) + sizeof(int32_t));
  CUFACE_CHECK(list_bytes <= 40 * 1024, "merge_top_k: k = " + std::to_string(k) + " exceeds the CUDA kernel's 5120");
  if (rows == 0 || scores.size(1) == 0) return;
  launch(merge_top_k_kernel, unsigned(rows), kThreads, list_bytes, cuda_stream(ctx), scores.data<float>(),
         scores.size(1), int32_t(first_column), best_score.data<float>(), best_index.data<int32_t>(), k);
}

}  // namespace cuface::cuda
