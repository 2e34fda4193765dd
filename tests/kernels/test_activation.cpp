// Activation kernels: CPU against float64 formulas written out here, then CUDA against the CPU twin.
#include <gtest/gtest.h>

#include <cmath>

#include "common/backends.h"
#include "common/device_compare.h"
#include "common/reference.h"
#include "kernels/activation.h"

namespace cuface {
namespace {

using testing::host_f32;
using testing::poisoned;
using testing::random_tensor;
using testing::relative_error;
using testing::to_doubles;
using testing::upload;

// Random values with some exact zeros, to pin down the x == 0 convention.
Tensor with_zeros(const Shape& shape, uint64_t seed) {
  Tensor t = random_tensor(shape, seed, -2.0f, 2.0f);
  for (int64_t i = 0; i < t.numel(); i += 7) t.data<float>()[i] = 0.0f;
  return t;
}

TEST(ActivationCpu, ReluForwardAndBackward) {
  Context ctx(Device::CPU);
  Tensor x = with_zeros({3, 5, 7, 3}, 1), dy = random_tensor(x.shape(), 2);
  Tensor y = Tensor::empty(x.shape()), dx = Tensor::empty(x.shape());
  relu_forward(ctx, x, y);
  relu_backward(ctx, y, dy, dx);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float v = x.data<float>()[i];
    ASSERT_EQ(y.data<float>()[i], v > 0 ? v : 0.0f) << i;
    ASSERT_EQ(dx.data<float>()[i], v > 0 ? dy.data<float>()[i] : 0.0f) << i;  // zero gradient at x == 0
  }
  // In place: y overwrites x, and backward from y still works.
  Tensor inplace = x.clone();
  relu_forward(ctx, inplace, inplace);
  EXPECT_EQ(relative_error(inplace, y), 0.0);
}

TEST(ActivationCpu, AddReluMatchesFormulaAndMayOverwriteAnInput) {
  Context ctx(Device::CPU);
  Tensor a = random_tensor({2, 3, 4, 17}, 3), b = random_tensor(a.shape(), 4);
  Tensor y = Tensor::empty(a.shape());
  add_relu(ctx, a, b, y);
  for (int64_t i = 0; i < a.numel(); ++i)
    ASSERT_EQ(y.data<float>()[i], std::max(a.data<float>()[i] + b.data<float>()[i], 0.0f));
  Tensor a2 = a.clone();
  add_relu(ctx, a2, b, a2);
  EXPECT_EQ(relative_error(a2, y), 0.0);
}

TEST(ActivationCpu, PreluForwardAndBackwardMatchFloat64) {
  Context ctx(Device::CPU);
  for (const Shape& shape : {Shape{3, 5, 4, 17}, Shape{1, 2, 3, 1}, Shape{7, 3}}) {
    const int64_t C = shape[shape.rank - 1];
    Tensor x = with_zeros(shape, 5), dy = random_tensor(shape, 6), slope = random_tensor({C}, 7, -0.5f, 0.5f);
    Tensor dslope = random_tensor({C}, 8);
    const std::vector<double> dslope0 = to_doubles(dslope);
    Tensor y = Tensor::empty(shape), dx = Tensor::empty(shape);
    prelu_forward(ctx, x, slope, y);
    prelu_backward(ctx, x, slope, dy, dx, dslope);
    std::vector<double> want_y, want_dx, want_dslope = dslope0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double v = x.data<float>()[i], g = dy.data<float>()[i], a = slope.data<float>()[i % C];
      want_y.push_back(v > 0 ? v : a * v);
      want_dx.push_back(v > 0 ? g : a * g);
      if (v <= 0) want_dslope[size_t(i % C)] += g * v;
    }
    EXPECT_LT(relative_error(to_doubles(y), want_y), 1e-7) << shape.str();
    EXPECT_LT(relative_error(to_doubles(dx), want_dx), 1e-7) << shape.str();
    EXPECT_LT(relative_error(to_doubles(dslope), want_dslope), 1e-6) << shape.str();
    // Without dslope only dx is computed; dx may overwrite dy.
    Tensor none, g = dy.clone();
    prelu_backward(ctx, x, slope, g, g, none);
    EXPECT_EQ(relative_error(g, dx), 0.0);
  }
}

// A NaN must survive the ReLUs on both backends (CUDA's fmaxf would silently turn it into 0), so a
// diverging run shows its NaNs.
class ReluNan : public testing::BackendTest {};
TEST_P(ReluNan, NanStaysNan) {
  Tensor host = Tensor::empty({2, 3});
  for (int64_t i = 0; i < 6; ++i) host.data<float>()[i] = i == 4 ? NAN : float(i) - 2.5f;
  Tensor x = host.to(device()), y = Tensor::empty({2, 3}, DType::F32, device());
  Tensor z = Tensor::empty({2, 3}, DType::F32, device());
  relu_forward(ctx(), x, y);
  add_relu(ctx(), x, x, z);
  ctx().synchronize();
  const Tensor hy = y.to(Device::CPU), hz = z.to(Device::CPU);
  EXPECT_TRUE(std::isnan(hy.data<float>()[4]));
  EXPECT_TRUE(std::isnan(hz.data<float>()[4]));
  EXPECT_EQ(hy.data<float>()[0], 0.0f);
  EXPECT_EQ(hz.data<float>()[5], 5.0f);
}
// PReLU too: a NaN input gives a NaN output and a NaN slope gradient (dy * min(x, 0)) on both backends.
TEST_P(ReluNan, PreluKeepsNan) {
  Tensor host = Tensor::empty({2, 3});
  for (int64_t i = 0; i < 6; ++i) host.data<float>()[i] = i == 4 ? NAN : float(i) - 2.5f;
  Tensor x = host.to(device()), y = Tensor::empty({2, 3}, DType::F32, device());
  Tensor slope = Tensor::zeros({3}).to(device()), dslope = Tensor::zeros({3}).to(device());
  Tensor dy = Tensor::empty({2, 3});
  for (int64_t i = 0; i < 6; ++i) dy.data<float>()[i] = 1.0f;
  Tensor dx = Tensor::empty({2, 3}, DType::F32, device());
  prelu_forward(ctx(), x, slope, y);
  prelu_backward(ctx(), x, slope, dy.to(device()), dx, dslope);
  ctx().synchronize();
  const Tensor hy = y.to(Device::CPU), hs = dslope.to(Device::CPU);
  EXPECT_TRUE(std::isnan(hy.data<float>()[4]));
  EXPECT_TRUE(std::isnan(hs.data<float>()[1])) << "channel 1 holds the NaN";
  EXPECT_EQ(hs.data<float>()[0], -2.5f + 0.0f);  // min(-2.5, 0) + min(0.5, 0)
  EXPECT_EQ(hs.data<float>()[2], -0.5f);         // min(-0.5, 0) + min(2.5, 0)
}
CUFACE_ON_EVERY_BACKEND(ReluNan);

TEST(ActivationChecks, RejectsBadArguments) {
  Context ctx(Device::CPU);
  Tensor x = Tensor::zeros({2, 3, 4}), y = Tensor::zeros({2, 3, 5}), ok = Tensor::zeros({2, 3, 4});
  EXPECT_THROW(relu_forward(ctx, x, y), Error);
  EXPECT_THROW(add_relu(ctx, x, y, ok), Error);
  EXPECT_THROW(prelu_forward(ctx, x, Tensor::zeros({3}), ok), Error);  // slope must have C = 4 values
  Tensor half = Tensor::zeros({2, 3, 4}, DType::BF16), half_y = Tensor::zeros({2, 3, 4}, DType::BF16);
  EXPECT_THROW(relu_forward(ctx, half, half_y), Error);  // bf16 is for CUDA only
}

// ---- CUDA against the CPU twin -------------------------------------------------------------------

class ActivationCuda : public ::testing::TestWithParam<DType> {};

TEST_P(ActivationCuda, MatchesCpu) {
  CUFACE_REQUIRE_GPU();
  const DType dtype = GetParam();
  const double bound = dtype == DType::F32 ? 1e-5 : 2e-2;
  Context cpu(Device::CPU), gpu(Device::CUDA);
  for (const Shape& shape : {Shape{3, 5, 7, 17}, Shape{32, 14, 14, 256}, Shape{5, 1}}) {
    const int64_t C = shape[shape.rank - 1];
    Tensor x = with_zeros(shape, 11), b = random_tensor(shape, 12), dy = random_tensor(shape, 13);
    Tensor slope = random_tensor({C}, 14, -0.5f, 0.5f), dslope = random_tensor({C}, 15);
    Tensor d_x = upload(x, dtype), d_b = upload(b, dtype), d_dy = upload(dy, dtype);
    Tensor d_slope = slope.to(Device::CUDA), d_dslope = dslope.to(Device::CUDA);

    Tensor y = Tensor::empty(shape), dx = Tensor::empty(shape), sum = Tensor::empty(shape);
    Tensor py = Tensor::empty(shape), pdx = Tensor::empty(shape);
    relu_forward(cpu, x, y);
    relu_backward(cpu, y, dy, dx);
    add_relu(cpu, x, b, sum);
    prelu_forward(cpu, x, slope, py);
    prelu_backward(cpu, x, slope, dy, pdx, dslope);

    Tensor d_y = poisoned(shape, dtype), d_dx = poisoned(shape, dtype), d_sum = poisoned(shape, dtype);
    Tensor d_py = poisoned(shape, dtype), d_pdx = poisoned(shape, dtype);
    relu_forward(gpu, d_x, d_y);
    relu_backward(gpu, d_y, d_dy, d_dx);
    add_relu(gpu, d_x, d_b, d_sum);
    prelu_forward(gpu, d_x, d_slope, d_py);
    prelu_backward(gpu, d_x, d_slope, d_dy, d_pdx, d_dslope);
    gpu.synchronize();
    EXPECT_EQ(relative_error(host_f32(d_y), y), 0.0) << shape.str();  // exact: no arithmetic
    EXPECT_EQ(relative_error(host_f32(d_dx), dx), 0.0) << shape.str();
    EXPECT_LT(relative_error(host_f32(d_sum), sum), bound) << shape.str();
    EXPECT_LT(relative_error(host_f32(d_py), py), bound) << shape.str();
    EXPECT_LT(relative_error(host_f32(d_pdx), pdx), bound) << shape.str();
    EXPECT_LT(relative_error(host_f32(d_dslope), dslope), 1e-5) << shape.str();  // f32 sums of the same inputs
  }
}

INSTANTIATE_TEST_SUITE_P(DTypes, ActivationCuda, ::testing::Values(DType::F32, DType::BF16),
                         [](const ::testing::TestParamInfo<DType>& info) { return dtype_name(info.param); });

}  // namespace
}  // namespace cuface
