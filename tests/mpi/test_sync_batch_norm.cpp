// Synchronised BatchNorm: each rank normalises its slice of a batch with the statistics of the whole
// batch. Compared with an ordinary BatchNorm that sees the whole batch in one process (computed on
// every rank): outputs, running statistics, input gradients (this rank's rows) and parameter
// gradients (summed over the ranks, as the trainer's gradient average times the world size); with the
// residual join fused in, the shortcut's gradient too.
#include <gtest/gtest.h>

#include <cmath>

#include "layers/batch_norm.h"
#include "mpi/world.h"

namespace cuface::testing {
namespace {

void expect_near_tensor(const Tensor& got, const Tensor& expected, double tolerance, const char* what) {
  ASSERT_EQ(got.shape(), expected.shape()) << what;
  EXPECT_LT(relative_error(got, expected), tolerance) << what;
}

void check_sync_batch_norm(bool relu, const Shape& rank_shape, bool join = false) {
  Context ctx(Device::CPU);
  const int k = world().world_size(), rank = world().rank();
  const int64_t channels = rank_shape[rank_shape.rank - 1];
  const int64_t rank_rows = rank_shape[0];
  Shape full_shape = rank_shape;
  full_shape.dims[0] = rank_rows * k;
  // Activations with an offset, so the shifted moments matter; the same on every rank.
  Tensor x = random_tensor(full_shape, 11, 2.0f, 5.0f);
  Tensor dy = random_tensor(full_shape, 12, -1.0f, 1.0f);
  Tensor shortcut = join ? random_tensor(full_shape, 15, -1.0f, 1.0f) : Tensor();

  BatchNormOptions options;
  options.relu = relu;
  options.momentum = 0.3f;
  BatchNorm whole(channels, options), mine(channels, options);
  for (BatchNorm* bn : {&whole, &mine}) {
    Tensor gamma = random_tensor({channels}, 13, 0.5f, 1.5f), beta = random_tensor({channels}, 14, -0.5f, 0.5f);
    bn->weight().value.copy_from(gamma);
    bn->bias().value.copy_from(beta);
  }
  mine.set_sync(&world());

  const int64_t first = rank * rank_rows;
  auto mine_of = [&](const Tensor& t) { return t.slice(first, first + rank_rows).clone(); };
  // Without a shortcut, forward_join is forward, and backward_join's dx is backward's.
  auto backward = [join](BatchNorm& bn, Context& c, const Tensor& d) {
    return join ? bn.backward_join(c, d) : BatchNorm::JoinGradients{bn.backward(c, d), Tensor()};
  };
  Tensor y_whole = whole.forward_join(ctx, x, shortcut);
  const BatchNorm::JoinGradients whole_grads = backward(whole, ctx, dy);
  Tensor dx_whole = whole_grads.dx;
  Tensor y_mine = mine.forward_join(ctx, mine_of(x), join ? mine_of(shortcut) : Tensor());
  const BatchNorm::JoinGradients mine_grads = backward(mine, ctx, mine_of(dy));
  Tensor dx_mine = mine_grads.dx;
  if (join) expect_near_tensor(mine_grads.dshortcut, mine_of(whole_grads.dshortcut), 1e-6, "dshortcut");

  expect_near_tensor(y_mine, mine_of(y_whole), 1e-5, "y");
  expect_near_tensor(dx_mine, mine_of(dx_whole), 1e-4, "dx");
  expect_near_tensor(mine.running_mean().value, whole.running_mean().value, 1e-6, "running_mean");
  expect_near_tensor(mine.running_var().value, whole.running_var().value, 1e-5, "running_var");
  EXPECT_EQ(mine.num_batches_tracked().value.data<int32_t>()[0], 1);
  for (Parameter* p : {&mine.weight(), &mine.bias()}) world().all_reduce(ctx, p->grad, ReduceOp::Sum);
  expect_near_tensor(mine.weight().grad, whole.weight().grad, 1e-5, "dgamma");
  expect_near_tensor(mine.bias().grad, whole.bias().grad, 1e-5, "dbeta");
  EXPECT_TRUE(same_on_every_rank(ctx, mine.running_var().value));
}

TEST(SyncBatchNorm, EqualsTheWholeBatch2d) { check_sync_batch_norm(true, {3, 4, 5, 7}); }
TEST(SyncBatchNorm, EqualsTheWholeBatch1d) { check_sync_batch_norm(false, {4, 33}); }
TEST(SyncBatchNorm, ResidualJoinEqualsTheWholeBatch) { check_sync_batch_norm(true, {2, 3, 5, 6}, true); }

}  // namespace
}  // namespace cuface::testing
