#include <gtest/gtest.h>

#include <cmath>

#include "common/backends.h"
#include "common/conv_pool_reference.h"
#include "common/device_compare.h"
#include "common/gradcheck.h"
#include "layers/conv2d.h"

namespace cuface {
namespace {

struct LayerCase {
  int64_t n, h, w, in, out, kernel, stride, padding;
  bool bias;
  testing::ConvProblem problem() const { return {n, h, w, in, out, kernel, kernel, Conv2dGeometry(stride, padding)}; }
};

const std::vector<LayerCase> kLayerCases = {
    {2, 5, 4, 3, 4, 3, 1, 1, true},    // 3x3 with bias
    {1, 7, 6, 5, 3, 3, 2, 1, false},   // 3x3 stride 2
    {3, 4, 5, 6, 5, 1, 1, 0, true},    // 1x1: the direct GEMM path
    {2, 6, 5, 4, 3, 1, 2, 0, false},   // 1x1 stride 2
    {1, 9, 11, 3, 4, 7, 2, 3, false},  // the 7x7 stem
};

std::string describe(const LayerCase& c) { return c.problem().str() + (c.bias ? " with bias" : ""); }

// Convolution is linear in x and in the weight, so the central difference has no truncation error:
// what remains is the float32 rounding of the outputs that the perturbed coordinate touches, about
// u * |y| / 2h = 6e-8 * sqrt(K) / 0.02 ~ 3e-5 relative for the K <= 150 products summed here (the
// outputs it does not touch are recomputed identically and cancel); measured: at most 1.3e-5.
// 3e-4 is an order of magnitude above the estimate, while any indexing error (a misplaced tap
// changes a derivative by O(1) relative) is far above it.
constexpr double kGradcheckBound = 3e-4;

TEST(Conv2dLayer, GradientsMatchFiniteDifferences) {
  Context ctx(Device::CPU);
  for (const LayerCase& c : kLayerCases) {
    Conv2d conv(c.in, c.out, c.kernel, c.stride, c.padding, c.bias, 7);
    const testing::GradCheckResult r =
        testing::check_layer_gradients(ctx, conv, testing::random_tensor(c.problem().x_shape(), 1));
    EXPECT_LT(r.input_error, kGradcheckBound) << describe(c);
    for (const auto& [name, error] : r.parameter_errors)
      EXPECT_LT(error, kGradcheckBound) << describe(c) << " " << name;
    EXPECT_EQ(r.parameter_errors.size(), c.bias ? 2u : 1u);
  }
}

// The layer against the float64 convolution reference (bias added and reduced in double).
TEST(Conv2dLayer, ForwardAndBackwardMatchFloat64Reference) {
  Context ctx(Device::CPU);
  for (const LayerCase& c : kLayerCases) {
    const testing::ConvProblem p = c.problem();
    Conv2d conv(c.in, c.out, c.kernel, c.stride, c.padding, c.bias, 3);
    const Tensor x = testing::random_tensor(p.x_shape(), 4), dy = testing::random_tensor(p.y_shape(), 5);
    const Tensor y = conv.forward(ctx, x);
    const Tensor dx = conv.backward(ctx, dy);

    const Tensor& w = conv.weight().value;
    testing::Reference y_ref = testing::conv2d_forward_reference(p, x, w);
    if (c.bias)
      for (size_t i = 0; i < y_ref.value.size(); ++i) {
        const double b = conv.bias()->value.data<float>()[i % size_t(c.out)];
        y_ref.value[i] += b;
        y_ref.magnitude[i] += std::abs(b);
      }
    testing::expect_matches_reference(y, y_ref, p.kh * p.kw * p.c + 3, 1e-5, "y " + describe(c));
    testing::expect_matches_reference(dx, testing::conv2d_backward_data_reference(p, dy, w), p.o + p.kh * p.kw + 2,
                                      1e-5, "dx " + describe(c));
    testing::expect_matches_reference(conv.weight().grad,
                                      testing::conv2d_backward_filter_reference(p, x, dy, Tensor::zeros(p.w_shape())),
                                      p.n * p.oh() * p.ow() + 2, 1e-5, "dweight " + describe(c));
    if (c.bias) {
      for (int64_t o = 0; o < c.out; ++o) {
        double want = 0, magnitude = 0;
        for (int64_t r = 0; r < dy.numel() / c.out; ++r) {
          want += dy.data<float>()[r * c.out + o];
          magnitude += std::abs(dy.data<float>()[r * c.out + o]);
        }
        EXPECT_NEAR(conv.bias()->grad.data<float>()[o], want, std::ldexp(magnitude, -23)) << describe(c);
      }
    }
  }
}

// Two backward passes add up; a frozen layer leaves the gradients alone but still returns dx; no
// input gradient: an undefined dx and the same parameter gradients.
TEST(Conv2dLayer, AccumulatesFreezesAndSkipsTheInputGradient) {
  Context ctx(Device::CPU);
  Conv2d conv(4, 6, 3, 2, 1, true, 11);
  const Tensor x = testing::random_tensor({2, 7, 6, 4}, 1), dy = testing::random_tensor({2, 4, 3, 6}, 2);
  conv.forward(ctx, x);
  const Tensor dx = conv.backward(ctx, dy).clone();
  const Tensor once_w = conv.weight().grad.clone(), once_b = conv.bias()->grad.clone();
  conv.forward(ctx, x);
  conv.backward(ctx, dy);
  for (int64_t i = 0; i < once_w.numel(); ++i)
    ASSERT_NEAR(conv.weight().grad.data<float>()[i], 2 * once_w.data<float>()[i],
                1e-5 * (1 + std::abs(once_w.data<float>()[i])));
  for (int64_t i = 0; i < once_b.numel(); ++i)
    ASSERT_NEAR(conv.bias()->grad.data<float>()[i], 2 * once_b.data<float>()[i],
                1e-5 * (1 + std::abs(once_b.data<float>()[i])));

  conv.zero_grad(ctx);
  conv.set_frozen(true);
  conv.forward(ctx, x);
  const Tensor frozen_dx = conv.backward(ctx, dy);
  for (int64_t i = 0; i < dx.numel(); ++i) ASSERT_EQ(frozen_dx.data<float>()[i], dx.data<float>()[i]);
  for (int64_t i = 0; i < once_w.numel(); ++i) ASSERT_EQ(conv.weight().grad.data<float>()[i], 0.0f);
  for (int64_t i = 0; i < once_b.numel(); ++i) ASSERT_EQ(conv.bias()->grad.data<float>()[i], 0.0f);

  conv.set_frozen(false);
  conv.set_input_gradient(false);
  conv.forward(ctx, x);
  EXPECT_FALSE(conv.backward(ctx, dy).defined());
  for (int64_t i = 0; i < once_w.numel(); ++i) ASSERT_EQ(conv.weight().grad.data<float>()[i], once_w.data<float>()[i]);
}

TEST(Conv2dLayer, BackwardNeedsATrainingForward) {
  Context ctx(Device::CPU);
  Conv2d conv(3, 4, 3, 1, 1);
  const Tensor x = testing::random_tensor({1, 5, 5, 3}, 1), dy = testing::random_tensor({1, 5, 5, 4}, 2);
  EXPECT_THROW(conv.backward(ctx, dy), Error);
  conv.set_training(false);
  conv.forward(ctx, x);
  EXPECT_THROW(conv.backward(ctx, dy), Error);
  conv.set_training(true);
  conv.forward(ctx, x);
  EXPECT_NO_THROW(conv.backward(ctx, dy));
  EXPECT_THROW(conv.backward(ctx, dy), Error);  // what forward saved is released by backward
  EXPECT_THROW(conv.forward(ctx, testing::random_tensor({1, 5, 5, 2}, 3)), Error);
}

// Names, layout flag, decay flags, and torchvision's initialisation statistics from the seed.
TEST(Conv2dLayer, ParametersAndInitialisation) {
  Conv2d conv(64, 128, 3, 1, 1, true, 42);
  const std::vector<NamedParameter> params = conv.named_parameters();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].name, "weight");
  EXPECT_EQ(params[1].name, "bias");
  EXPECT_TRUE(params[0].parameter->ohwi && params[0].parameter->decay);
  EXPECT_TRUE(!params[1].parameter->ohwi && !params[1].parameter->decay);
  EXPECT_EQ(conv.weight().value.shape(), (Shape{128, 3, 3, 64}));

  const std::vector<double> w = testing::to_doubles(conv.weight().value);
  double mean = 0, square = 0;
  for (double v : w) mean += v, square += v * v;
  mean /= double(w.size());
  const double stddev = std::sqrt(square / double(w.size()) - mean * mean);
  const double expected = std::sqrt(2.0 / (128 * 9));  // Kaiming normal, fan-out
  // 73728 samples: the standard error of the mean is stddev / 271, of the stddev about stddev / 384.
  EXPECT_NEAR(mean, 0.0, 5 * expected / 271);
  EXPECT_NEAR(stddev, expected, 5 * expected / 384);
  const double bound = 1.0 / std::sqrt(64.0 * 9);
  for (double b : testing::to_doubles(conv.bias()->value)) EXPECT_TRUE(b >= -bound && b < bound) << b;

  Conv2d same(64, 128, 3, 1, 1, true, 42), other(64, 128, 3, 1, 1, true, 43);
  EXPECT_EQ(testing::to_doubles(same.weight().value), w);
  EXPECT_NE(testing::to_doubles(other.weight().value), w);
}

TEST(Conv2dLayer, WeightOihwRoundTrip) {
  Conv2d conv(3, 5, 3, 2, 1);
  const Tensor oihw = testing::random_tensor({5, 3, 3, 3}, 9);
  conv.set_weight_oihw(oihw);
  const Tensor& ohwi = conv.weight().value;
  for (int64_t o = 0; o < 5; ++o)
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t kh = 0; kh < 3; ++kh)
        for (int64_t kw = 0; kw < 3; ++kw)
          ASSERT_EQ(ohwi.data<float>()[((o * 3 + kh) * 3 + kw) * 3 + i],
                    oihw.data<float>()[((o * 3 + i) * 3 + kh) * 3 + kw]);
  EXPECT_EQ(testing::to_doubles(conv.weight_oihw()), testing::to_doubles(oihw));
  EXPECT_THROW(conv.set_weight_oihw(Tensor::zeros({5, 3, 3, 2})), Error);
}

// PyTorch's nn.Conv2d on the same input, weights and upstream gradient (scripts/make_conv_fixture.py).
TEST(Conv2dLayer, MatchesPyTorch) {
  const auto get = testing::fixture_tensor;
  Context ctx(Device::CPU);
  struct Case {
    const char* name;
    int64_t kernel, stride, padding;
    bool bias;
  };
  for (const Case& c :
       {Case{"conv3x3s2", 3, 2, 1, true}, Case{"conv7x7s2", 7, 2, 3, false}, Case{"conv1x1s2", 1, 2, 0, false}}) {
    const std::string name(c.name);
    const Tensor weight = get(name + ".weight");
    Conv2d conv(weight.size(1), weight.size(0), c.kernel, c.stride, c.padding, c.bias);
    conv.set_weight_oihw(weight);
    if (c.bias) conv.bias()->value.copy_from(get(name + ".bias"));
    const Tensor y = conv.forward(ctx, get(name + ".x"));
    const Tensor dx = conv.backward(ctx, get(name + ".dy"));
    EXPECT_LT(testing::relative_error(y, get(name + ".y")), 1e-4) << name;
    EXPECT_LT(testing::relative_error(dx, get(name + ".dx")), 1e-4) << name;
    EXPECT_LT(testing::relative_error(ohwi_to_oihw(conv.weight().grad), get(name + ".dweight")), 1e-4) << name;
    if (c.bias) {
      EXPECT_LT(testing::relative_error(conv.bias()->grad, get(name + ".dbias")), 1e-4) << name;
    }
  }
}

// ---- CUDA against CPU, through the layer (bf16: bf16 activations, f32 master weights) -------------

struct PrecisionCase {
  Precision precision;
  DType dtype;
  double bound;
};

class Conv2dLayerCuda : public ::testing::TestWithParam<PrecisionCase> {};

TEST_P(Conv2dLayerCuda, MatchesTheCpuLayer) {
  CUFACE_REQUIRE_GPU();
  const PrecisionCase pc = GetParam();
  Context cpu(Device::CPU), gpu(Device::CUDA);
  gpu.set_precision(pc.precision);
  for (const LayerCase& c : kLayerCases) {
    const testing::ConvProblem p = c.problem();
    Conv2d on_cpu(c.in, c.out, c.kernel, c.stride, c.padding, c.bias, 5);
    Conv2d on_gpu(c.in, c.out, c.kernel, c.stride, c.padding, c.bias, 5);
    on_gpu.to(Device::CUDA);
    Tensor x = testing::random_tensor(p.x_shape(), 6), dy = testing::random_tensor(p.y_shape(), 7);
    const Tensor gx = testing::upload(x, pc.dtype), gdy = testing::upload(dy, pc.dtype);
    const Tensor y = on_cpu.forward(cpu, x), dx = on_cpu.backward(cpu, dy);
    const Tensor gy = on_gpu.forward(gpu, gx), gdx = on_gpu.backward(gpu, gdy);
    gpu.synchronize();
    EXPECT_EQ(gy.dtype(), pc.dtype);
    EXPECT_EQ(gdx.dtype(), pc.dtype);
    // bf16 also rounds the weight copy, which the CPU layer does not see: still well inside 2e-2.
    EXPECT_LT(testing::relative_error(testing::host_f32(gy), y), pc.bound) << describe(c);
    EXPECT_LT(testing::relative_error(testing::host_f32(gdx), dx), pc.bound) << describe(c);
    EXPECT_LT(testing::relative_error(on_gpu.weight().grad, on_cpu.weight().grad), pc.bound) << describe(c);
    if (c.bias) {
      EXPECT_LT(testing::relative_error(on_gpu.bias()->grad, on_cpu.bias()->grad), pc.bound) << describe(c);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Precisions, Conv2dLayerCuda,
                         ::testing::Values(PrecisionCase{Precision::FP32, DType::F32, 1e-5},
                                           PrecisionCase{Precision::TF32, DType::F32, 5e-3},
                                           PrecisionCase{Precision::BF16, DType::BF16, 2e-2}),
                         [](const ::testing::TestParamInfo<PrecisionCase>& info) {
                           return std::string(precision_name(info.param.precision));
                         });

}  // namespace
}  // namespace cuface
