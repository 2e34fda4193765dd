// The collectives of a class-sharded (model-parallel) softmax head: each rank holds a slice of the
// classes' logits; the row max (max all-reduce), the row sum of exponentials (sum all-reduce) and
// the target logit (sum all-reduce, from the rank owning it) give the exact cross-entropy and
// softmax of the unsharded head.
#include <gtest/gtest.h>

#include <cmath>

#include "mpi/world.h"

namespace cuface::testing {
namespace {

TEST(ShardedSoftmax, EqualsTheUnshardedHead) {
  Context ctx(Device::CPU);
  int k = world().world_size(), rank = world().rank();
  const int rows = 6, per_rank = 5, classes = per_rank * k;
  Tensor logits = random_tensor({rows, classes}, 77, -8.0f, 8.0f);  // the same on every rank
  const int labels[rows] = {0, classes - 1, 3 % classes, classes / 2, 1, classes - 2};
  int first = rank * per_rank;  // this rank's classes [first, first + per_rank)
  auto z = [&](int row, int c) { return logits.data<float>()[row * classes + c]; };

  Tensor max = Tensor::empty({rows});
  for (int row = 0; row < rows; ++row) {
    float m = -INFINITY;
    for (int c = first; c < first + per_rank; ++c) m = std::max(m, z(row, c));
    max.data<float>()[row] = m;
  }
  world().all_reduce(ctx, max, ReduceOp::Max);
  Tensor sums = Tensor::zeros({2, rows});  // row 0: sum of exp(z - max); row 1: target logit
  for (int row = 0; row < rows; ++row) {
    for (int c = first; c < first + per_rank; ++c) sums.data<float>()[row] += std::exp(z(row, c) - max.data<float>()[row]);
    if (labels[row] >= first && labels[row] < first + per_rank) sums.data<float>()[rows + row] = z(row, labels[row]);
  }
  world().all_reduce(ctx, sums, ReduceOp::Sum);
  Tensor probabilities = Tensor::empty({1, rows * per_rank});  // this rank's slice, row-major
  for (int row = 0; row < rows; ++row)
    for (int c = 0; c < per_rank; ++c)
      probabilities.data<float>()[row * per_rank + c] =
          std::exp(z(row, first + c) - max.data<float>()[row]) / sums.data<float>()[row];
  Tensor all = Tensor::empty({k, rows * per_rank});
  world().all_gather(ctx, probabilities, all);

  for (int row = 0; row < rows; ++row) {
    double m = -INFINITY, s = 0;
    for (int c = 0; c < classes; ++c) m = std::max(m, double(z(row, c)));
    for (int c = 0; c < classes; ++c) s += std::exp(double(z(row, c)) - m);
    double loss = std::log(s) + m - z(row, labels[row]);
    double sharded_loss = std::log(double(sums.data<float>()[row])) + max.data<float>()[row] - sums.data<float>()[rows + row];
    EXPECT_NEAR(sharded_loss, loss, 1e-5 * std::max(1.0, loss)) << "row " << row;
    for (int c = 0; c < classes; ++c) {
      int owner = c / per_rank;
      double p = all.data<float>()[owner * rows * per_rank + row * per_rank + c % per_rank];
      EXPECT_NEAR(p, std::exp(double(z(row, c)) - m) / s, 1e-6) << "row " << row << " class " << c;
    }
  }
}

}  // namespace
}  // namespace cuface::testing
