// The class-sharded margin head against the unsharded MarginHead on the whole batch (computed on every
// rank from the same seeds): loss and statistics, this rank's slice of W's gradient, and this rank's
// rows of the input gradient (times the world size, see layers/sharded_margin_head.h). Uneven class
// splits, an unlabelled row, and every margin type.
#include <gtest/gtest.h>

#include <algorithm>

#include "kernels/partial_fc.h"
#include "layers/sharded_margin_head.h"
#include "mpi/world.h"

namespace cuface::testing {
namespace {

constexpr int64_t kDim = 16;

MarginHeadOptions test_options(MarginType type, float sample_rate = 1.0f) {
  MarginHeadOptions options;
  options.margin = default_margin_params(type);
  // A small scale keeps the softmax away from one-hot, so every class's gradient carries weight.
  options.margin.s = 4.0f;
  options.sample_rate = sample_rate;
  options.seed = 5;
  return options;
}

// The whole batch (every rank builds the same): rows leaning towards their target's centre of W, so
// accuracy is neither 0 nor 1, and one unlabelled row.
struct WholeBatch {
  Tensor x, labels;
};
WholeBatch whole_batch(const Tensor& weight, int64_t rows) {
  const int64_t classes = weight.size(0);
  WholeBatch b{random_tensor({rows, kDim}, 21, -1.0f, 1.0f), Tensor::empty({rows}, DType::I32)};
  for (int64_t i = 0; i < rows; ++i) b.labels.data<int32_t>()[i] = int32_t((i * 7 + 3) % classes);
  b.labels.data<int32_t>()[1] = -1;
  for (int64_t i = 2; i < rows; i += 3) {
    const int32_t label = b.labels.data<int32_t>()[i];
    for (int64_t d = 0; d < kDim; ++d) b.x.data<float>()[i * kDim + d] += 100.0f * weight.data<float>()[label * kDim + d];
  }
  return b;
}

// This rank's forward and backward on its rows of the batch; the loss and statistics checked against
// `expected` (the reference head's), the input gradient against K x the reference's rows.
void check_step(ShardedMarginHead& mine, const WholeBatch& b, const HeadStats& expected, const Tensor& dx_whole) {
  Context ctx(Device::CPU);
  const int k = world().world_size();
  const int64_t n = b.x.size(0) / k, row0 = n * world().rank();
  mine.forward(ctx, b.x.slice(row0, row0 + n).clone(), b.labels.slice(row0, row0 + n).clone());
  Tensor dx_mine = mine.backward(ctx);
  const HeadStats got = mine.stats(ctx);
  EXPECT_NEAR(got.loss, expected.loss, 1e-5 * std::max(1.0f, expected.loss));
  EXPECT_EQ(got.accuracy, expected.accuracy);
  EXPECT_GT(expected.accuracy, 0.0f);
  EXPECT_NEAR(got.mean_target, expected.mean_target, 1e-6);
  EXPECT_EQ(got.labelled, expected.labelled);
  Tensor dx_expected = dx_whole.slice(row0, row0 + n).clone();
  for (int64_t i = 0; i < dx_expected.numel(); ++i) dx_expected.data<float>()[i] *= float(k);
  EXPECT_LT(relative_error(dx_mine, dx_expected), 1e-5);
}

void check_against_unsharded(MarginType type, int64_t classes, int64_t rows_per_rank) {
  Context ctx(Device::CPU);
  const int k = world().world_size(), rank = world().rank();
  const MarginHeadOptions options = test_options(type);
  MarginHead whole(classes, kDim, options);
  ShardedMarginHead mine(world(), classes, kDim, options);
  const auto [first, count] = ShardedMarginHead::shard_of(classes, rank, k);
  ASSERT_EQ(mine.first_class(), first);
  ASSERT_EQ(mine.local_classes(), count);
  EXPECT_EQ(relative_error(mine.weight().value, whole.weight().value.slice(first, first + count).clone()), 0.0)
      << "the slice starts as the unsharded head's rows";

  const WholeBatch b = whole_batch(whole.weight().value, rows_per_rank * k);
  whole.forward(ctx, b.x, b.labels);
  const Tensor dx_whole = whole.backward(ctx);
  check_step(mine, b, whole.stats(ctx), dx_whole);
  EXPECT_LT(relative_error(mine.weight().grad, whole.weight().grad.slice(first, first + count).clone()), 1e-5);
}

// Partial FC on the shards: each rank samples among its own classes; the step equals the exact head on
// the union of the ranks' samples (the rows of W they name, labels renumbered), and a row of W that
// no rank sampled gets no gradient. Every rank works out every rank's sample on the CPU (the same
// labels, seed and step) to build that reference; a second step draws other negatives.
void check_sampled_against_union(MarginType type, int64_t classes, int64_t rows_per_rank, float rate) {
  Context ctx(Device::CPU);
  const int k = world().world_size(), rank = world().rank();
  const int64_t rows = rows_per_rank * k;
  const MarginHeadOptions options = test_options(type, rate);
  MarginHead whole(classes, kDim, test_options(type));  // only for W and the batch
  ShardedMarginHead mine(world(), classes, kDim, options);
  const WholeBatch b = whole_batch(whole.weight().value, rows);
  Tensor previous;
  for (uint64_t step = 0; step < 2; ++step) {
    mine.set_sampling_step(step);
    // The union of the samples, in class order (ranks hold ascending windows).
    std::vector<int32_t> union_classes;
    for (int r = 0; r < k; ++r) {
      const auto [first, count] = ShardedMarginHead::shard_of(classes, r, k);
      const int64_t sample = partial_fc_sample_count(count, rows, rate);
      Tensor index = Tensor::empty({sample}, DType::I32), renumbered = Tensor::empty({rows}, DType::I32);
      select_classes(ctx, b.labels, classes, options.seed, step + 1, index, renumbered, {first, count});
      for (int64_t j = 0; j < sample; ++j) union_classes.push_back(int32_t(first + index.data<int32_t>()[j]));
    }
    const int64_t sampled = int64_t(union_classes.size());
    ASSERT_LT(sampled, classes) << "the test needs classes left out";
    MarginHead subset(sampled, kDim, test_options(type));
    Tensor subset_labels = Tensor::empty({rows}, DType::I32);
    for (int64_t j = 0; j < sampled; ++j)
      std::memcpy(subset.weight().value.data<float>() + j * kDim, whole.weight().value.data<float>() + union_classes[j] * kDim,
                  kDim * sizeof(float));
    for (int64_t i = 0; i < rows; ++i) {
      const int32_t y = b.labels.data<int32_t>()[i];
      const auto at = std::find(union_classes.begin(), union_classes.end(), y);
      ASSERT_TRUE(y < 0 || at != union_classes.end()) << "positive " << y << " not sampled";
      subset_labels.data<int32_t>()[i] = y < 0 ? -1 : int32_t(at - union_classes.begin());
    }
    subset.forward(ctx, b.x, subset_labels);
    const Tensor dx_subset = subset.backward(ctx);

    mine.zero_grad(ctx);
    check_step(mine, b, subset.stats(ctx), dx_subset);
    EXPECT_EQ(mine.sampling_step(), step + 1);
    // W's gradient: the subset's rows for the sampled classes of this rank, zero elsewhere.
    Tensor expected = Tensor::zeros(mine.weight().grad.shape());
    for (int64_t j = 0; j < sampled; ++j) {
      const int64_t local = union_classes[j] - mine.first_class();
      if (local < 0 || local >= mine.local_classes()) continue;
      std::memcpy(expected.data<float>() + local * kDim, subset.weight().grad.data<float>() + j * kDim, kDim * sizeof(float));
    }
    EXPECT_LT(relative_error(mine.weight().grad, expected), 1e-5);
    if (previous.defined()) {
      EXPECT_FALSE(previous.shape() == mine.sampled_rows().shape() &&
                   std::equal(previous.data<int32_t>(), previous.data<int32_t>() + previous.numel(),
                              mine.sampled_rows().data<int32_t>()))
          << "rank " << rank << " drew the same sample twice";
    }
    previous = mine.sampled_rows().clone();
  }
}

TEST(ShardedMarginHead, ArcFaceUnevenSplit) { check_against_unsharded(MarginType::ArcFace, 11, 4); }
TEST(ShardedMarginHead, CosFace) { check_against_unsharded(MarginType::CosFace, 24, 3); }
TEST(ShardedMarginHead, Combined) { check_against_unsharded(MarginType::Combined, 37, 5); }
TEST(ShardedMarginHead, PartialFcArcFace) { check_sampled_against_union(MarginType::ArcFace, 97, 3, 0.2f); }
TEST(ShardedMarginHead, PartialFcCosFaceFewClasses) { check_sampled_against_union(MarginType::CosFace, 41, 3, 0.3f); }

}  // namespace
}  // namespace cuface::testing
