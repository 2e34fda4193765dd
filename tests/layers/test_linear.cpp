#include <gtest/gtest.h>

#include <cmath>

#include "common/backends.h"
#include "common/conv_pool_reference.h"
#include "common/device_compare.h"
#include "common/gradcheck.h"
#include "layers/linear.h"

namespace cuface {
namespace {

struct LinearCase {
  int64_t batch, in, out;
  bool bias;
};
const std::vector<LinearCase> kCases = {{3, 7, 5, true}, {1, 13, 2, false}, {4, 1, 3, true}, {5, 40, 33, true}};

std::string describe(const LinearCase& c) {
  return "[" + std::to_string(c.batch) + ", " + std::to_string(c.in) + "] -> " + std::to_string(c.out) +
         (c.bias ? " with bias" : "");
}

// Linear in x, W and b: no truncation error, only the f32 rounding of the touched outputs
// (~ u sqrt(in) / 2h ~ 2e-5 relative for in <= 40); measured at most 1e-5. The bound of Conv2d.
constexpr double kGradcheckBound = 3e-4;

TEST(LinearLayer, GradientsMatchFiniteDifferences) {
  Context ctx(Device::CPU);
  for (const LinearCase& c : kCases) {
    Linear linear(c.in, c.out, c.bias, 3);
    const testing::GradCheckResult r =
        testing::check_layer_gradients(ctx, linear, testing::random_tensor({c.batch, c.in}, 1));
    EXPECT_LT(r.input_error, kGradcheckBound) << describe(c);
    for (const auto& [name, error] : r.parameter_errors)
      EXPECT_LT(error, kGradcheckBound) << describe(c) << " " << name;
    EXPECT_EQ(r.parameter_errors.size(), c.bias ? 2u : 1u);
  }
}

TEST(LinearLayer, ForwardAndBackwardMatchFloat64Reference) {
  Context ctx(Device::CPU);
  for (const LinearCase& c : kCases) {
    Linear linear(c.in, c.out, c.bias, 4);
    const Tensor x = testing::random_tensor({c.batch, c.in}, 2), dy = testing::random_tensor({c.batch, c.out}, 3);
    const Tensor y = linear.forward(ctx, x), dx = linear.backward(ctx, dy);
    const testing::LinearReference ref =
        testing::linear_reference(x, linear.weight().value, c.bias ? &linear.bias()->value : nullptr, dy);
    testing::expect_matches_reference(y, ref.y, c.in + 3, 1e-5, "y " + describe(c));
    testing::expect_matches_reference(dx, ref.dx, c.out + 2, 1e-5, "dx " + describe(c));
    testing::expect_matches_reference(linear.weight().grad, ref.dw, c.batch + 2, 1e-5, "dweight " + describe(c));
    if (c.bias) {
      for (int64_t o = 0; o < c.out; ++o)
        EXPECT_NEAR(linear.bias()->grad.data<float>()[o], ref.db[size_t(o)], 1e-6 * (1 + std::abs(ref.db[size_t(o)])));
    }
  }
}

TEST(LinearLayer, AccumulatesAndFreezes) {
  Context ctx(Device::CPU);
  Linear linear(6, 4, true, 5);
  const Tensor x = testing::random_tensor({3, 6}, 1), dy = testing::random_tensor({3, 4}, 2);
  linear.forward(ctx, x);
  const Tensor dx = linear.backward(ctx, dy).clone();
  const Tensor once = linear.weight().grad.clone(), once_b = linear.bias()->grad.clone();
  linear.forward(ctx, x);
  linear.backward(ctx, dy);
  for (int64_t i = 0; i < once.numel(); ++i)
    ASSERT_NEAR(linear.weight().grad.data<float>()[i], 2 * once.data<float>()[i],
                1e-6 * (1 + std::abs(once.data<float>()[i])));
  for (int64_t i = 0; i < once_b.numel(); ++i)
    ASSERT_NEAR(linear.bias()->grad.data<float>()[i], 2 * once_b.data<float>()[i],
                1e-6 * (1 + std::abs(once_b.data<float>()[i])));
  linear.zero_grad(ctx);
  linear.set_frozen(true);
  linear.forward(ctx, x);
  const Tensor frozen_dx = linear.backward(ctx, dy);
  for (int64_t i = 0; i < dx.numel(); ++i) ASSERT_EQ(frozen_dx.data<float>()[i], dx.data<float>()[i]);
  for (double g : testing::to_doubles(linear.weight().grad)) ASSERT_EQ(g, 0.0);
  for (double g : testing::to_doubles(linear.bias()->grad)) ASSERT_EQ(g, 0.0);
  linear.set_training(false);
  linear.forward(ctx, x);
  EXPECT_THROW(linear.backward(ctx, dy), Error);
  EXPECT_THROW(linear.forward(ctx, testing::random_tensor({3, 5}, 3)), Error);
}

// nn.Linear's default initialisation, U(-1/sqrt(in), 1/sqrt(in)) for weight and bias; names and decay.
TEST(LinearLayer, ParametersAndInitialisation) {
  Linear linear(2048, 512, true, 9);
  const std::vector<NamedParameter> params = linear.named_parameters();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].name, "weight");
  EXPECT_EQ(params[1].name, "bias");
  EXPECT_TRUE(params[0].parameter->decay);
  EXPECT_FALSE(params[1].parameter->decay);
  EXPECT_EQ(linear.weight().value.shape(), (Shape{512, 2048}));
  const double bound = 1.0 / std::sqrt(2048.0);
  double square = 0;
  const std::vector<double> w = testing::to_doubles(linear.weight().value);
  for (double v : w) {
    ASSERT_TRUE(v >= -bound && v < bound);
    square += v * v;
  }
  // Uniform variance bound^2 / 3; 1M samples give the variance to about 0.1%.
  EXPECT_NEAR(square / double(w.size()), bound * bound / 3, 0.01 * bound * bound / 3);
}

TEST(LinearLayer, MatchesPyTorch) {
  Context ctx(Device::CPU);
  const auto get = testing::fixture_tensor;
  const Tensor weight = get("linear.weight");
  Linear linear(weight.size(1), weight.size(0), true);
  linear.weight().value.copy_from(weight);
  linear.bias()->value.copy_from(get("linear.bias"));
  EXPECT_LT(testing::relative_error(linear.forward(ctx, get("linear.x")), get("linear.y")), 1e-4);
  EXPECT_LT(testing::relative_error(linear.backward(ctx, get("linear.dy")), get("linear.dx")), 1e-4);
  EXPECT_LT(testing::relative_error(linear.weight().grad, get("linear.dweight")), 1e-4);
  EXPECT_LT(testing::relative_error(linear.bias()->grad, get("linear.dbias")), 1e-4);
}

struct PrecisionCase {
  Precision precision;
  DType dtype;
  double bound;
};

class LinearLayerCuda : public ::testing::TestWithParam<PrecisionCase> {};

TEST_P(LinearLayerCuda, MatchesTheCpuLayer) {
  CUFACE_REQUIRE_GPU();
  const PrecisionCase pc = GetParam();
  Context cpu(Device::CPU), gpu(Device::CUDA);
  gpu.set_precision(pc.precision);
  std::vector<LinearCase> cases = kCases;
  cases.push_back({150, 2048, 512, true});  // the embedding layer of the face model
  for (const LinearCase& c : cases) {
    Linear on_cpu(c.in, c.out, c.bias, 6), on_gpu(c.in, c.out, c.bias, 6);
    on_gpu.to(Device::CUDA);
    Tensor x = testing::random_tensor({c.batch, c.in}, 7), dy = testing::random_tensor({c.batch, c.out}, 8);
    const Tensor gx = testing::upload(x, pc.dtype), gdy = testing::upload(dy, pc.dtype);
    const Tensor y = on_cpu.forward(cpu, x), dx = on_cpu.backward(cpu, dy);
    const Tensor gy = on_gpu.forward(gpu, gx), gdx = on_gpu.backward(gpu, gdy);
    gpu.synchronize();
    EXPECT_EQ(gy.dtype(), pc.dtype);
    EXPECT_LT(testing::relative_error(testing::host_f32(gy), y), pc.bound) << describe(c);
    EXPECT_LT(testing::relative_error(testing::host_f32(gdx), dx), pc.bound) << describe(c);
    EXPECT_LT(testing::relative_error(on_gpu.weight().grad, on_cpu.weight().grad), pc.bound) << describe(c);
    if (c.bias) {
      EXPECT_LT(testing::relative_error(on_gpu.bias()->grad, on_cpu.bias()->grad), pc.bound) << describe(c);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Precisions, LinearLayerCuda,
                         ::testing::Values(PrecisionCase{Precision::FP32, DType::F32, 1e-5},
                                           PrecisionCase{Precision::TF32, DType::F32, 5e-3},
                                           PrecisionCase{Precision::BF16, DType::BF16, 2e-2}),
                         [](const ::testing::TestParamInfo<PrecisionCase>& info) {
                           return std::string(precision_name(info.param.precision));
                         });

}  // namespace
}  // namespace cuface
