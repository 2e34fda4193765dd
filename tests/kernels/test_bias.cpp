#include <gtest/gtest.h>

#include <cmath>

#include "common/backends.h"
#include "common/device_compare.h"
#include "common/reference.h"
#include "kernels/bias.h"

namespace cuface {
namespace {

// Small, odd, one row, one channel, and large enough for the threaded CPU paths.
const std::vector<Shape> kShapes = {Shape{7, 5}, Shape{2, 3, 4, 13}, Shape{1, 1}, Shape{40000, 3}, Shape{3, 2048}};

TEST(BiasCpu, AddBiasAndItsGradientMatchFloat64) {
  Context ctx(Device::CPU);
  for (const Shape& shape : kShapes) {
    const int64_t channels = shape[shape.rank - 1], rows = shape.numel() / channels;
    const Tensor x = testing::random_tensor(shape, 1), bias = testing::random_tensor({channels}, 2);
    Tensor y = x.clone();
    add_bias(ctx, y, bias);
    for (int64_t i = 0; i < y.numel(); ++i)  // one f32 addition: exact to half an ulp
      ASSERT_EQ(y.data<float>()[i], x.data<float>()[i] + bias.data<float>()[i % channels]) << shape.str();

    const Tensor initial = testing::random_tensor({channels}, 3);
    Tensor db = initial.clone();
    accumulate_bias_grad(ctx, x, db);
    for (int64_t c = 0; c < channels; ++c) {
      double want = initial.data<float>()[c], magnitude = std::abs(want);
      for (int64_t r = 0; r < rows; ++r) {
        want += x.data<float>()[r * channels + c];
        magnitude += std::abs(x.data<float>()[r * channels + c]);
      }
      // Summed in double, rounded once to f32 (plus the f32 addition to `initial`).
      ASSERT_NEAR(db.data<float>()[c], want, std::ldexp(magnitude, -23)) << shape.str() << " channel " << c;
    }
  }
}

TEST(BiasCpu, RejectsMismatchedBias) {
  Context ctx(Device::CPU);
  Tensor y = Tensor::zeros({4, 5});
  EXPECT_THROW(add_bias(ctx, y, Tensor::zeros({4})), Error);
  EXPECT_THROW(add_bias(ctx, y, Tensor::zeros({5}, DType::BF16)), Error);
  Tensor db = Tensor::zeros({5, 1});
  EXPECT_THROW(accumulate_bias_grad(ctx, y, db), Error);
}

class BiasCuda : public ::testing::TestWithParam<DType> {};

TEST_P(BiasCuda, MatchesTheCpuTwin) {
  CUFACE_REQUIRE_GPU();
  const DType dtype = GetParam();
  const double bound = dtype == DType::F32 ? 1e-6 : 2e-2;
  Context cpu(Device::CPU), gpu(Device::CUDA);
  std::vector<Shape> shapes = kShapes;
  shapes.push_back(Shape{256, 56, 56, 33});  // many row blocks, ragged channel tile
  for (const Shape& shape : shapes) {
    const int64_t channels = shape[shape.rank - 1];
    Tensor x = testing::random_tensor(shape, 4);
    const Tensor bias = testing::random_tensor({channels}, 5), initial = testing::random_tensor({channels}, 6);
    Tensor gy = testing::upload(x, dtype);  // rounds x to bf16 first where needed
    Tensor y = x.clone(), db = initial.clone();
    add_bias(cpu, y, bias);
    accumulate_bias_grad(cpu, x, db);

    Tensor gdb = initial.to(Device::CUDA);
    accumulate_bias_grad(gpu, gy, gdb);  // before add_bias changes gy
    add_bias(gpu, gy, bias.to(Device::CUDA));
    gpu.synchronize();
    EXPECT_LT(testing::relative_error(testing::host_f32(gy), y), bound) << shape.str();
    std::vector<double> got = testing::to_doubles(gdb), want = testing::to_doubles(db);
    const std::vector<double> start = testing::to_doubles(initial);
    for (size_t c = 0; c < got.size(); ++c) got[c] -= start[c], want[c] -= start[c];
    // The sums themselves are f32 on both sides (bf16 only rounds the inputs, identically).
    EXPECT_LT(testing::relative_error(got, want), 1e-5) << shape.str();
  }
}

INSTANTIATE_TEST_SUITE_P(DTypes, BiasCuda, ::testing::Values(DType::F32, DType::BF16),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(dtype_name(info.param));
                         });

}  // namespace
}  // namespace cuface
