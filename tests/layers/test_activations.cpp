// ReLU and PReLU layers: backward against central finite differences and float64 formulas, the Layer
// contract, and the CUDA layers against the CPU ones. (The residual join's ReLU is fused into
// BatchNorm: tests/layers/test_batch_norm.cpp.)
#include <gtest/gtest.h>

#include "common/backends.h"
#include "common/gradcheck.h"
#include "common/reference.h"
#include "layers/prelu.h"
#include "layers/relu.h"

namespace cuface {
namespace {

using testing::random_tensor;
using testing::relative_error;
using testing::to_doubles;

// Uniform in +-[0.05, 1.05]: every input is further than the finite-difference step (1e-2) from the
// kink at 0, where the derivative jumps and a central difference would straddle it.
Tensor away_from_zero(const Shape& shape, uint64_t seed) {
  Tensor t = random_tensor(shape, seed, -1.0f, 1.0f);
  for (int64_t i = 0; i < t.numel(); ++i) {
    float& v = t.data<float>()[i];
    v = v < 0 ? v - 0.05f : v + 0.05f;
  }
  return t;
}

// ReLU and PReLU are piecewise linear: away from the kink the central difference is exact up to
// float32 rounding of the loss (~1e-6 / 2h ~ 1e-4 relative), hence the 1e-3 bound.
TEST(ReluLayer, BackwardMatchesFiniteDifferencesAndFormula) {
  Context ctx(Device::CPU);
  ReLU relu;
  Tensor x = away_from_zero({3, 4, 5, 3}, 1);
  EXPECT_LT(testing::check_layer_gradients(ctx, relu, x).worst(), 1e-3);
  EXPECT_TRUE(relu.named_parameters().empty());
  Tensor dy = random_tensor(x.shape(), 2);
  relu.forward(ctx, x);
  Tensor dx = relu.backward(ctx, dy);
  for (int64_t i = 0; i < x.numel(); ++i)
    ASSERT_EQ(dx.data<float>()[i], x.data<float>()[i] > 0 ? dy.data<float>()[i] : 0.0f);
}

TEST(PreluLayer, BackwardMatchesFiniteDifferences) {
  Context ctx(Device::CPU);
  for (const Shape& shape : {Shape{2, 3, 4, 5}, Shape{6, 1}, Shape{3, 17}}) {
    PReLU prelu(shape[shape.rank - 1]);
    prelu.weight().value = random_tensor({shape[shape.rank - 1]}, 3, -0.5f, 0.5f);
    const testing::GradCheckResult r = testing::check_layer_gradients(ctx, prelu, away_from_zero(shape, 4));
    EXPECT_LT(r.input_error, 1e-3) << shape.str();
    EXPECT_LT(r.parameter_errors.at("weight"), 1e-3) << shape.str();
  }
}

TEST(PreluLayer, MatchesFloat64FormulaAccumulatesAndFreezes) {
  Context ctx(Device::CPU);
  PReLU prelu(7);
  ASSERT_EQ(prelu.named_parameters().size(), 1u);
  EXPECT_EQ(prelu.named_parameters()[0].name, "weight");
  EXPECT_EQ(prelu.weight().value.data<float>()[6], 0.25f);  // PyTorch's initial slope
  EXPECT_TRUE(prelu.weight().trainable && prelu.weight().decay);
  prelu.weight().value = random_tensor({7}, 5, -0.5f, 0.5f);
  Tensor x = random_tensor({4, 3, 2, 7}, 6), dy = random_tensor(x.shape(), 7);
  Tensor y = prelu.forward(ctx, x);
  Tensor dx = prelu.backward(ctx, dy);
  prelu.backward(ctx, dy);
  std::vector<double> want_y, want_dx, want_dslope(7, 0.0);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double v = x.data<float>()[i], g = dy.data<float>()[i], a = prelu.weight().value.data<float>()[i % 7];
    want_y.push_back(v > 0 ? v : a * v);
    want_dx.push_back(v > 0 ? g : a * g);
    if (v <= 0) want_dslope[size_t(i % 7)] += 2 * g * v;  // two backward calls accumulate
  }
  EXPECT_LT(relative_error(to_doubles(y), want_y), 1e-7);
  EXPECT_LT(relative_error(to_doubles(dx), want_dx), 1e-7);
  EXPECT_LT(relative_error(to_doubles(prelu.weight().grad), want_dslope), 1e-6);

  prelu.zero_grad(ctx);
  prelu.set_frozen(true);
  prelu.forward(ctx, x);
  EXPECT_EQ(relative_error(prelu.backward(ctx, dy), dx), 0.0);
  for (int64_t c = 0; c < 7; ++c) EXPECT_EQ(prelu.weight().grad.data<float>()[c], 0.0f);
  EXPECT_THROW(prelu.forward(ctx, Tensor::zeros({2, 6})), Error);
}

// The layers on the GPU give the CPU layers' results (kernel-level f32/bf16 checks are in
// tests/kernels/test_activation.cpp).
TEST(ActivationLayersCuda, MatchCpuLayers) {
  CUFACE_REQUIRE_GPU();
  Context cpu(Device::CPU), gpu(Device::CUDA);
  Tensor x = random_tensor({4, 6, 5, 17}, 20), dy = random_tensor(x.shape(), 22);
  Tensor d_x = x.to(Device::CUDA), d_dy = dy.to(Device::CUDA);
  ReLU relu, d_relu;
  PReLU prelu(17), d_prelu(17);
  prelu.weight().value = random_tensor({17}, 23, -0.5f, 0.5f);
  d_prelu.weight().value = prelu.weight().value.clone();
  d_prelu.to(Device::CUDA);
  Tensor want[] = {relu.forward(cpu, x), relu.backward(cpu, dy), prelu.forward(cpu, x), prelu.backward(cpu, dy)};
  Tensor got[] = {d_relu.forward(gpu, d_x), d_relu.backward(gpu, d_dy), d_prelu.forward(gpu, d_x),
                  d_prelu.backward(gpu, d_dy)};
  gpu.synchronize();
  for (int k = 0; k < 4; ++k) EXPECT_LT(relative_error(got[k], want[k]), 1e-6) << k;
  EXPECT_LT(relative_error(d_prelu.weight().grad, prelu.weight().grad), 1e-5);
}

}  // namespace
}  // namespace cuface
