#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "common/backends.h"
#include "common/conv_pool_reference.h"
#include "common/device_compare.h"
#include "common/gradcheck.h"
#include "layers/flatten.h"
#include "layers/global_avg_pool.h"
#include "layers/max_pool2d.h"

namespace cuface {
namespace {

// Distinct values at least 0.05 apart in random order: the finite-difference step (0.01) can never
// change which input wins a window, so max pooling is linear around the point being checked.
Tensor separated_tensor(const Shape& shape, uint64_t seed) {
  std::vector<int64_t> order(size_t(shape.numel()));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(seed));
  Tensor t = Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = 0.05f * float(order[size_t(i)] - t.numel() / 2);
  return t;
}

// Piecewise linear (max) and linear (mean, reshape) layers: no truncation error, only the f32
// rounding of the touched outputs over 2h (measured: max pool 3e-8, average pool 7e-6); 1e-4 leaves
// room and still rejects any misrouted gradient, which is off by O(1).
constexpr double kGradcheckBound = 1e-4;

TEST(MaxPool2dLayer, GradientsMatchFiniteDifferences) {
  Context ctx(Device::CPU);
  for (const auto& [shape, g] :
       {std::pair{Shape{2, 7, 6, 3}, Pool2dGeometry{3, 2, 1}}, std::pair{Shape{1, 5, 8, 4}, Pool2dGeometry{2, 2, 0}},
        std::pair{Shape{3, 6, 5, 2}, Pool2dGeometry{3, 1, 1}}}) {
    MaxPool2d pool(g.kernel, g.stride, g.padding);
    const testing::GradCheckResult r = testing::check_layer_gradients(ctx, pool, separated_tensor(shape, 1));
    EXPECT_LT(r.input_error, kGradcheckBound) << shape.str();
    EXPECT_TRUE(r.parameter_errors.empty());
  }
}

TEST(MaxPool2dLayer, DefaultsAreResNetsStemAndBackwardNeedsATrainingForward) {
  Context ctx(Device::CPU);
  MaxPool2d pool;
  const Tensor x = testing::random_tensor({1, 112, 112, 2}, 2);
  const Tensor y = pool.forward(ctx, x);
  EXPECT_EQ(y.shape(), (Shape{1, 56, 56, 2}));  // 3x3, stride 2, padding 1
  const auto [y_ref, argmax_ref] = testing::max_pool2d_reference(x, Pool2dGeometry{3, 2, 1});
  for (int64_t i = 0; i < y.numel(); ++i) ASSERT_EQ(y.data<float>()[i], y_ref[size_t(i)]);
  const Tensor dy = testing::random_tensor(y.shape(), 3);
  const Tensor dx = pool.backward(ctx, dy);
  const std::vector<double> dx_ref = testing::max_pool2d_backward_reference(x.shape(), dy, argmax_ref);
  EXPECT_LT(testing::relative_error(testing::to_doubles(dx), dx_ref), 1e-7);
  EXPECT_THROW(pool.backward(ctx, dy), Error);  // the saved argmax was released
  pool.set_training(false);
  pool.forward(ctx, x);
  EXPECT_THROW(pool.backward(ctx, dy), Error);
}

TEST(GlobalAvgPoolLayer, GradientsMatchFiniteDifferences) {
  Context ctx(Device::CPU);
  GlobalAvgPool pool;
  const testing::GradCheckResult r = testing::check_layer_gradients(ctx, pool, testing::random_tensor({3, 4, 5, 7}, 4));
  EXPECT_LT(r.input_error, kGradcheckBound);
  const Tensor y = pool.forward(ctx, testing::random_tensor({2, 3, 3, 5}, 5));
  EXPECT_EQ(y.shape(), (Shape{2, 5}));
  pool.set_training(false);
  pool.forward(ctx, testing::random_tensor({2, 3, 3, 5}, 5));
  EXPECT_THROW(pool.backward(ctx, testing::random_tensor({2, 5}, 6)), Error);
}

TEST(FlattenLayer, IsAViewAndBackwardRestoresTheShape) {
  Context ctx(Device::CPU);
  Flatten flatten;
  const Tensor x = testing::random_tensor({3, 2, 4, 5}, 7);
  const Tensor y = flatten.forward(ctx, x);
  EXPECT_EQ(y.shape(), (Shape{3, 40}));
  EXPECT_EQ(y.raw(), x.raw());  // no copy
  const Tensor dy = testing::random_tensor({3, 40}, 8);
  const Tensor dx = flatten.backward(ctx, dy);
  EXPECT_EQ(dx.shape(), x.shape());
  EXPECT_EQ(dx.raw(), dy.raw());
  EXPECT_THROW(flatten.backward(ctx, testing::random_tensor({3, 39}, 9)), Error);
  const testing::GradCheckResult r = testing::check_layer_gradients(ctx, flatten, x.clone());
  EXPECT_LT(r.input_error, kGradcheckBound);
}

// PyTorch's MaxPool2d(3, 2, 1) and AdaptiveAvgPool2d(1) + Flatten (scripts/make_conv_fixture.py).
TEST(PoolingLayers, MatchPyTorch) {
  Context ctx(Device::CPU);
  const auto get = testing::fixture_tensor;
  MaxPool2d max_pool;
  EXPECT_LT(testing::relative_error(max_pool.forward(ctx, get("maxpool.x")), get("maxpool.y")), 1e-6);
  EXPECT_LT(testing::relative_error(max_pool.backward(ctx, get("maxpool.dy")), get("maxpool.dx")), 1e-6);
  GlobalAvgPool avg_pool;
  EXPECT_LT(testing::relative_error(avg_pool.forward(ctx, get("avgpool.x")), get("avgpool.y")), 1e-5);
  EXPECT_LT(testing::relative_error(avg_pool.backward(ctx, get("avgpool.dy")), get("avgpool.dx")), 1e-5);
}

// The layers on CUDA in f32 and bf16 against the CPU.
class PoolingLayersCuda : public ::testing::TestWithParam<DType> {};

TEST_P(PoolingLayersCuda, MatchTheCpuLayers) {
  CUFACE_REQUIRE_GPU();
  const DType dtype = GetParam();
  const double bound = dtype == DType::F32 ? 1e-6 : 2e-2;
  Context cpu(Device::CPU), gpu(Device::CUDA);
  Tensor x = testing::random_tensor({4, 28, 28, 64}, 10);
  const Tensor gx = testing::upload(x, dtype);
  MaxPool2d max_cpu, max_gpu;
  GlobalAvgPool avg_cpu, avg_gpu;
  const Tensor pooled = max_cpu.forward(cpu, x), gpooled = max_gpu.forward(gpu, gx);
  const Tensor mean = avg_cpu.forward(cpu, pooled), gmean = avg_gpu.forward(gpu, gpooled);
  Tensor dy = testing::random_tensor(mean.shape(), 11);
  const Tensor gdy = testing::upload(dy, dtype);
  const Tensor dx = max_cpu.backward(cpu, avg_cpu.backward(cpu, dy));
  const Tensor gdx = max_gpu.backward(gpu, avg_gpu.backward(gpu, gdy));
  gpu.synchronize();
  EXPECT_EQ(gmean.dtype(), dtype);
  EXPECT_LT(testing::relative_error(testing::host_f32(gmean), mean), bound);
  EXPECT_LT(testing::relative_error(testing::host_f32(gdx), dx), bound);
}

INSTANTIATE_TEST_SUITE_P(DTypes, PoolingLayersCuda, ::testing::Values(DType::F32, DType::BF16),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(dtype_name(info.param));
                         });

}  // namespace
}  // namespace cuface
