// Bucketed gradient averaging against a plain all-reduce of each gradient, for odd bucket splits.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/grad_buckets.h"
#include "mpi/world.h"

namespace cuface::testing {
namespace {

std::vector<Shape> odd_shapes() { return {{7, 3}, {5}, {1}, {13, 2, 3}, {4, 4, 4}, {}, {3}, {129}, {2, 2}, {300}}; }

// Fills gradient i with rank-specific values for `step`, the way backward writes into the views.
void fill(GradBuckets& buckets, int step) {
  for (int i = 0; i < buckets.size(); ++i) {
    Tensor g = buckets.grad(i);
    g.copy_from(rank_input(g.shape(), uint64_t(100 * step + i), world().rank()));
  }
}

// Element-wise: |bucketed - plain| <= tolerance * mean over ranks of |x|.
void expect_close(const Tensor& bucketed, const Tensor& plain, int step, int i, double tolerance) {
  for (int64_t e = 0; e < plain.numel(); ++e) {
    double magnitude = 0;
    for (int r = 0; r < world().world_size(); ++r)
      magnitude += std::fabs(rank_input(plain.shape(), uint64_t(100 * step + i), r).data<float>()[e]);
    magnitude /= world().world_size();
    ASSERT_NEAR(bucketed.data<float>()[e], plain.data<float>()[e], tolerance * magnitude + 1e-30)
        << "gradient " << i << " element " << e;
  }
}

TEST(GradBuckets, BucketedMeanEqualsPlainAllReduce) {
  Context ctx(Device::CPU);
  std::vector<Shape> shapes = odd_shapes();
  for (size_t limit : {size_t(1), size_t(100), size_t(300), size_t(1000), size_t(1) << 20}) {
    GradBuckets buckets(world(), shapes, Device::CPU, limit);
    for (int step = 0; step < 2; ++step) {  // the second step reuses the buckets
      buckets.zero(ctx);
      fill(buckets, step);
      std::vector<Tensor> plain;
      for (int i = 0; i < buckets.size(); ++i) plain.push_back(buckets.grad(i).clone());
      // Marked out of order within pairs: buckets must still start in order on every rank.
      for (int i = 0; i < buckets.size(); i += 2) {
        if (i + 1 < buckets.size()) buckets.mark_ready(ctx, i + 1);
        buckets.mark_ready(ctx, i);
      }
      buckets.wait(ctx);
      for (int i = 0; i < buckets.size(); ++i) {
        world().all_reduce(ctx, plain[size_t(i)], ReduceOp::Mean);
        expect_close(buckets.grad(i), plain[size_t(i)], step, i, 4 * 0x1p-24);
      }
      for (int b = 0; b < buckets.bucket_count(); ++b) EXPECT_TRUE(same_on_every_rank(ctx, buckets.bucket(b)));
    }
  }
}

TEST(GradBuckets, WaitReducesUnmarkedGradients) {
  Context ctx(Device::CPU);
  GradBuckets buckets(world(), odd_shapes(), Device::CPU, 200);
  fill(buckets, 3);
  std::vector<Tensor> plain;
  for (int i = 0; i < buckets.size(); ++i) plain.push_back(buckets.grad(i).clone());
  buckets.mark_ready(ctx, 0);  // the rest as if frozen
  buckets.wait(ctx);
  for (int i = 0; i < buckets.size(); ++i) {
    world().all_reduce(ctx, plain[size_t(i)], ReduceOp::Mean);
    expect_close(buckets.grad(i), plain[size_t(i)], 3, i, 4 * 0x1p-24);
  }
}

TEST(GradBuckets, Bf16WireWithinBf16Rounding) {
  Context ctx(Device::CPU);
  double k = world().world_size();
  GradBuckets buckets(world(), odd_shapes(), Device::CPU, 500, DType::BF16);
  fill(buckets, 4);
  std::vector<Tensor> plain;
  for (int i = 0; i < buckets.size(); ++i) plain.push_back(buckets.grad(i).clone());
  for (int i = 0; i < buckets.size(); ++i) buckets.mark_ready(ctx, i);
  buckets.wait(ctx);
  for (int i = 0; i < buckets.size(); ++i) {
    world().all_reduce(ctx, plain[size_t(i)], ReduceOp::Mean);
    // Rounding each input and each partial sum to bf16: K * 2^-8 of the magnitude summed over ranks.
    expect_close(buckets.grad(i), plain[size_t(i)], 4, i, (k + 1) * k * 0x1p-8);
  }
}

}  // namespace
}  // namespace cuface::testing
