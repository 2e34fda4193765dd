#include <gtest/gtest.h>

#include <cmath>

#include "common/backends.h"
#include "common/conv_pool_reference.h"
#include "common/device_compare.h"
#include "kernels/pool.h"

namespace cuface {
namespace {

struct PoolCase {
  Shape x;
  Pool2dGeometry g;
};

// ResNet's 3x3/2/1 first; then overlapping and non-overlapping windows, stride larger than the
// kernel, the identity, odd channel counts and batch 1 and 3.
const std::vector<PoolCase> kCases = {
    {{3, 7, 6, 5}, {3, 2, 1}},  {{1, 8, 9, 13}, {3, 2, 1}}, {{2, 6, 6, 3}, {2, 2, 0}}, {{1, 5, 7, 4}, {3, 1, 1}},
    {{3, 11, 9, 2}, {5, 3, 2}}, {{2, 4, 5, 3}, {1, 1, 0}},  {{1, 7, 7, 6}, {2, 3, 1}},
};

std::string describe(const PoolCase& c) {
  return "x " + c.x.str() + " kernel " + std::to_string(c.g.kernel) + " stride " + std::to_string(c.g.stride) +
         " padding " + std::to_string(c.g.padding);
}

// dx by scattering dy onto the reference argmax, as a Reference with per-element |term| sums.
testing::Reference max_pool_backward_reference(const Shape& x_shape, const Tensor& dy,
                                               const std::vector<int32_t>& argmax) {
  Tensor magnitude_dy = dy.clone();
  for (int64_t i = 0; i < dy.numel(); ++i) magnitude_dy.data<float>()[i] = std::abs(dy.data<float>()[i]);
  return {testing::max_pool2d_backward_reference(x_shape, dy, argmax),
          testing::max_pool2d_backward_reference(x_shape, magnitude_dy, argmax)};
}

TEST(MaxPoolCpu, ForwardAndBackwardMatchTheReference) {
  Context ctx(Device::CPU);
  for (const PoolCase& c : kCases) {
    const Shape y_shape = max_pool2d_output_shape(c.x, c.g);
    const Tensor x = testing::random_tensor(c.x, 1);
    Tensor y = Tensor::empty(y_shape), argmax = Tensor::empty(y_shape, DType::I32);
    testing::poison(y);
    max_pool2d_forward(ctx, x, y, argmax, c.g);
    const auto [y_ref, argmax_ref] = testing::max_pool2d_reference(x, c.g);
    for (int64_t i = 0; i < y.numel(); ++i) {  // a maximum is exact, and random inputs have no ties
      ASSERT_EQ(y.data<float>()[i], y_ref[size_t(i)]) << describe(c) << " element " << i;
      ASSERT_EQ(argmax.data<int32_t>()[i], argmax_ref[size_t(i)]) << describe(c) << " element " << i;
    }
    const Tensor dy = testing::random_tensor(y_shape, 2);
    Tensor dx = Tensor::empty(c.x);
    testing::poison(dx);
    max_pool2d_backward(ctx, dy, argmax, dx, c.g);
    const int64_t windows_per_pixel =
        ((c.g.kernel + c.g.stride - 1) / c.g.stride) * ((c.g.kernel + c.g.stride - 1) / c.g.stride);
    testing::expect_matches_reference(dx, max_pool_backward_reference(c.x, dy, argmax_ref), windows_per_pixel + 1, 1e-6,
                                      "max pool backward " + describe(c));
  }
}

// Ties go to the first maximum in (kh, kw) order, as in PyTorch; a window with a NaN yields NaN.
TEST(MaxPoolCpu, TiesAndNaN) {
  Context ctx(Device::CPU);
  const Pool2dGeometry g{3, 2, 1};
  Tensor x = Tensor::zeros({1, 5, 5, 2});
  for (int64_t i = 0; i < 25; ++i) x.data<float>()[2 * i] = 1.0f;  // channel 0 all equal
  x.data<float>()[(2 * 5 + 3) * 2 + 1] = NAN;                      // channel 1: a NaN at (2, 3)
  Tensor y = Tensor::empty({1, 3, 3, 2}), argmax = Tensor::empty({1, 3, 3, 2}, DType::I32);
  max_pool2d_forward(ctx, x, y, argmax, g);
  const auto [y_ref, argmax_ref] = testing::max_pool2d_reference(x, g);
  for (int64_t oh = 0; oh < 3; ++oh)
    for (int64_t ow = 0; ow < 3; ++ow) {
      const int64_t i = (oh * 3 + ow) * 2;
      EXPECT_EQ(y.data<float>()[i], 1.0f);
      EXPECT_EQ(argmax.data<int32_t>()[i], argmax_ref[size_t(i)]);  // first valid pixel of the window
      const bool covers_nan = std::abs(2 * oh - 2) <= 1 && std::abs(2 * ow - 3) <= 1;
      EXPECT_EQ(std::isnan(y.data<float>()[i + 1]), covers_nan) << oh << "," << ow;
      if (covers_nan) {
        EXPECT_EQ(argmax.data<int32_t>()[i + 1], 2 * 5 + 3);
      }
    }
}

TEST(MaxPoolCpu, RejectsBadGeometryAndArguments) {
  Context ctx(Device::CPU);
  EXPECT_THROW(max_pool2d_output_shape({1, 5, 5, 1}, {3, 2, 2}), Error);  // padding > kernel / 2
  EXPECT_THROW(max_pool2d_output_shape({1, 5, 5, 1}, {3, 0, 1}), Error);
  EXPECT_THROW(max_pool2d_output_shape({1, 2, 2, 1}, {5, 1, 1}), Error);  // kernel larger than the padded input
  const Tensor x = Tensor::zeros({1, 5, 5, 1});
  Tensor y = Tensor::zeros({1, 3, 3, 1});
  Tensor float_argmax = Tensor::zeros({1, 3, 3, 1});
  EXPECT_THROW(max_pool2d_forward(ctx, x, y, float_argmax), Error);
  Tensor wrong_y = Tensor::zeros({1, 2, 2, 1}), argmax = Tensor::zeros({1, 3, 3, 1}, DType::I32);
  EXPECT_THROW(max_pool2d_forward(ctx, x, wrong_y, argmax), Error);
}

TEST(GlobalAvgPoolCpu, ForwardAndBackwardMatchTheReference) {
  Context ctx(Device::CPU);
  for (const Shape& shape : {Shape{3, 7, 5, 13}, Shape{1, 1, 1, 4}, Shape{2, 4, 4, 2048}, Shape{1, 56, 56, 3}}) {
    const Tensor x = testing::random_tensor(shape, 3);
    Tensor y = Tensor::empty({shape[0], shape[3]});
    testing::poison(y);
    global_avg_pool_forward(ctx, x, y);
    const int64_t pixels = shape[1] * shape[2];
    // |sum error| <= gamma(pixels) * sum |x|; the division adds one rounding.
    Tensor magnitude = x.clone();
    for (int64_t i = 0; i < x.numel(); ++i) magnitude.data<float>()[i] = std::abs(x.data<float>()[i]);
    testing::expect_matches_reference(
        y, {testing::global_avg_pool_reference(x), testing::global_avg_pool_reference(magnitude)}, pixels + 1, 1e-6,
        "global average pool " + shape.str());

    const Tensor dy = testing::random_tensor({shape[0], shape[3]}, 4);
    Tensor dx = Tensor::empty(shape);
    testing::poison(dx);
    global_avg_pool_backward(ctx, dy, dx);
    for (int64_t i = 0; i < dx.numel(); ++i) {
      const double want =
          double(dy.data<float>()[(i / (pixels * shape[3])) * shape[3] + i % shape[3]]) / double(pixels);
      ASSERT_NEAR(dx.data<float>()[i], want, std::ldexp(std::abs(want), -22)) << shape.str() << " element " << i;
    }
  }
  Tensor y = Tensor::zeros({2, 3});
  EXPECT_THROW(global_avg_pool_forward(ctx, Tensor::zeros({2, 4, 4, 4}), y), Error);
}

// ---- CUDA against the CPU twin --------------------------------------------------------------------

class PoolCuda : public ::testing::TestWithParam<DType> {};

// f32: the same operations in the same order, so 1e-6 (in fact equal); bf16: the output rounding.
double bound_for(DType dtype) { return dtype == DType::F32 ? 1e-6 : 2e-2; }

TEST_P(PoolCuda, MaxPoolMatchesTheCpuTwin) {
  CUFACE_REQUIRE_GPU();
  const DType dtype = GetParam();
  Context cpu(Device::CPU), gpu(Device::CUDA);
  std::vector<PoolCase> cases = kCases;
  cases.push_back({{8, 56, 56, 64}, {3, 2, 1}});  // ResNet-50's stem pool at 112x112, batch 8
  for (const PoolCase& c : cases) {
    const Shape y_shape = max_pool2d_output_shape(c.x, c.g);
    Tensor x = testing::random_tensor(c.x, 5), dy = testing::random_tensor(y_shape, 6);
    const Tensor gx = testing::upload(x, dtype), gdy = testing::upload(dy, dtype);
    Tensor y = Tensor::empty(y_shape), argmax = Tensor::empty(y_shape, DType::I32), dx = Tensor::empty(c.x);
    max_pool2d_forward(cpu, x, y, argmax, c.g);
    max_pool2d_backward(cpu, dy, argmax, dx, c.g);

    Tensor gy = testing::poisoned(y_shape, dtype), gdx = testing::poisoned(c.x, dtype);
    Tensor unset = Tensor::empty(y_shape, DType::I32);  // -1 is no pixel: unwritten entries show
    for (int64_t i = 0; i < unset.numel(); ++i) unset.data<int32_t>()[i] = -1;
    Tensor gargmax = unset.to(Device::CUDA);
    max_pool2d_forward(gpu, gx, gy, gargmax, c.g);
    max_pool2d_backward(gpu, gdy, gargmax, gdx, c.g);
    gpu.synchronize();
    EXPECT_LT(testing::relative_error(testing::host_f32(gy), y), bound_for(dtype)) << describe(c);
    const Tensor host_argmax = gargmax.to(Device::CPU);
    for (int64_t i = 0; i < argmax.numel(); ++i)
      ASSERT_EQ(host_argmax.data<int32_t>()[i], argmax.data<int32_t>()[i]) << describe(c) << " element " << i;
    EXPECT_LT(testing::relative_error(testing::host_f32(gdx), dx), bound_for(dtype)) << describe(c);
  }
}

TEST_P(PoolCuda, GlobalAvgPoolMatchesTheCpuTwin) {
  CUFACE_REQUIRE_GPU();
  const DType dtype = GetParam();
  Context cpu(Device::CPU), gpu(Device::CUDA);
  for (const Shape& shape : {Shape{3, 7, 5, 13}, Shape{1, 1, 1, 4}, Shape{16, 4, 4, 2048}}) {
    Tensor x = testing::random_tensor(shape, 7), dy = testing::random_tensor({shape[0], shape[3]}, 8);
    const Tensor gx = testing::upload(x, dtype), gdy = testing::upload(dy, dtype);
    Tensor y = Tensor::empty({shape[0], shape[3]}), dx = Tensor::empty(shape);
    global_avg_pool_forward(cpu, x, y);
    global_avg_pool_backward(cpu, dy, dx);
    Tensor gy = testing::poisoned(y.shape(), dtype), gdx = testing::poisoned(shape, dtype);
    global_avg_pool_forward(gpu, gx, gy);
    global_avg_pool_backward(gpu, gdy, gdx);
    gpu.synchronize();
    EXPECT_LT(testing::relative_error(testing::host_f32(gy), y), bound_for(dtype)) << shape.str();
    EXPECT_LT(testing::relative_error(testing::host_f32(gdx), dx), bound_for(dtype)) << shape.str();
  }
}

INSTANTIATE_TEST_SUITE_P(DTypes, PoolCuda, ::testing::Values(DType::F32, DType::BF16),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(dtype_name(info.param));
                         });

}  // namespace
}  // namespace cuface
