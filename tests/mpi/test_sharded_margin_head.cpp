// The class-sharded margin head against the unsharded MarginHead on the whole batch (computed on every
// rank from the same seeds): loss and statistics, this rank's slice of W's gradient, and this rank's
// rows of the input gradient (times the world size, see layers/sharded_margin_head.h). Uneven class
// splits, an unlabelled row, and every margin type.
#include <gtest/gtest.h>

#include "layers/sharded_margin_head.h"
#include "mpi/world.h"

namespace cuface::testing {
namespace {

void check_against_unsharded(MarginType type, int64_t classes, int64_t rows_per_rank) {
  Context ctx(Device::CPU);
  const int k = world().world_size(), rank = world().rank();
  const int64_t dim = 16, rows = rows_per_rank * k;
  MarginHeadOptions options;
  options.margin = default_margin_params(type);
  // A small scale keeps the softmax away from one-hot, so every class's gradient carries weight.
  options.margin.s = 4.0f;
  options.seed = 5;
  MarginHead whole(classes, dim, options);
  ShardedMarginHead mine(world(), classes, dim, options);
  const auto [first, count] = ShardedMarginHead::shard_of(classes, rank, k);
  ASSERT_EQ(mine.first_class(), first);
  ASSERT_EQ(mine.local_classes(), count);
  EXPECT_EQ(relative_error(mine.weight().value, whole.weight().value.slice(first, first + count).clone()), 0.0)
      << "the slice starts as the unsharded head's rows";

  Tensor x = random_tensor({rows, dim}, 21, -1.0f, 1.0f);
  Tensor labels = Tensor::empty({rows}, DType::I32);
  for (int64_t i = 0; i < rows; ++i) labels.data<int32_t>()[i] = int32_t((i * 7 + 3) % classes);
  labels.data<int32_t>()[1] = -1;  // an unlabelled row
  // Rows leaning towards their target's centre, so accuracy is neither 0 nor 1.
  for (int64_t i = 2; i < rows; i += 3) {
    const Tensor centre = whole.weight().value.slice(labels.data<int32_t>()[i], labels.data<int32_t>()[i] + 1);
    for (int64_t d = 0; d < dim; ++d) x.data<float>()[i * dim + d] += 100.0f * centre.data<float>()[d];
  }

  whole.forward(ctx, x, labels);
  Tensor dx_whole = whole.backward(ctx);
  const HeadStats expected = whole.stats(ctx);

  const int64_t row0 = rank * rows_per_rank;
  mine.forward(ctx, x.slice(row0, row0 + rows_per_rank).clone(), labels.slice(row0, row0 + rows_per_rank).clone());
  Tensor dx_mine = mine.backward(ctx);
  const HeadStats got = mine.stats(ctx);

  EXPECT_NEAR(got.loss, expected.loss, 1e-5 * std::max(1.0f, expected.loss));
  EXPECT_EQ(got.accuracy, expected.accuracy);
  EXPECT_GT(expected.accuracy, 0.0f);
  EXPECT_NEAR(got.mean_target, expected.mean_target, 1e-6);
  EXPECT_EQ(got.labelled, expected.labelled);
  EXPECT_LT(relative_error(mine.weight().grad, whole.weight().grad.slice(first, first + count).clone()), 1e-5);
  Tensor dx_expected = dx_whole.slice(row0, row0 + rows_per_rank).clone();
  for (int64_t i = 0; i < dx_expected.numel(); ++i) dx_expected.data<float>()[i] *= float(k);
  EXPECT_LT(relative_error(dx_mine, dx_expected), 1e-5);

}

TEST(ShardedMarginHead, ArcFaceUnevenSplit) { check_against_unsharded(MarginType::ArcFace, 11, 4); }
TEST(ShardedMarginHead, CosFace) { check_against_unsharded(MarginType::CosFace, 24, 3); }
TEST(ShardedMarginHead, Combined) { check_against_unsharded(MarginType::Combined, 37, 5); }

}  // namespace
}  // namespace cuface::testing
