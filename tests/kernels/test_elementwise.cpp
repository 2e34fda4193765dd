// Element-wise kernels on every backend, for the paths tests/engine/test_tensor.cpp leaves out: copy of a
// non-f32 tensor, zero fill of a bf16 and an i32 tensor (a memset on the GPU), f16 casts, and the
// dtypes cast does not know.
#include <gtest/gtest.h>

#include "common/backends.h"
#include "common/device_compare.h"
#include "common/reference.h"
#include "kernels/elementwise.h"

namespace cuface {
namespace {

class Elementwise : public testing::BackendTest {};

TEST_P(Elementwise, CopyAndZeroFillAnyDType) {
  Tensor ints = Tensor::empty({37}, DType::I32);
  for (int64_t i = 0; i < 37; ++i) ints.data<int32_t>()[i] = int32_t(i * 7919 - 100000);
  const Tensor source = ints.to(device());
  Tensor copied = Tensor::empty({37}, DType::I32, device());
  copy(ctx(), source, copied);
  Tensor back = copied.to(Device::CPU);
  for (int64_t i = 0; i < 37; ++i) ASSERT_EQ(back.data<int32_t>()[i], ints.data<int32_t>()[i]) << i;

  fill(ctx(), copied, 0.0f);
  back = copied.to(Device::CPU);
  for (int64_t i = 0; i < 37; ++i) ASSERT_EQ(back.data<int32_t>()[i], 0) << i;
  Tensor half = Tensor::empty({37}, DType::BF16, device());
  testing::poison(half);
  fill(ctx(), half, 0.0f);
  back = half.to(Device::CPU);
  for (int64_t i = 0; i < 37; ++i) ASSERT_EQ(back.data<bf16>()[i].bits, 0) << i;
  EXPECT_THROW(fill(ctx(), half, 1.0f), Error);  // a non-zero fill needs f32
}

TEST_P(Elementwise, CastToF16AndBackMatchesHostRounding) {
  // Normal and subnormal halves, and values past f16's range (they round to infinity).
  Tensor a = testing::random_tensor({1001}, 9, -70000.0f, 70000.0f);
  for (int64_t i = 0; i < 200; ++i) a.data<float>()[i] *= 1e-9f;
  Tensor half = Tensor::empty({1001}, DType::F16, device());
  cast(ctx(), a.to(device()), half);
  Tensor back = Tensor::empty({1001}, DType::F32, device());
  cast(ctx(), half, back);
  const Tensor host = back.to(Device::CPU);
  for (int64_t i = 0; i < 1001; ++i)
    ASSERT_EQ(host.data<float>()[i], to_float(to_f16(a.data<float>()[i]))) << i << " " << a.data<float>()[i];
}

TEST_P(Elementwise, CastRejectsNonFloatDTypes) {
  Tensor pixels = Tensor::zeros({8}, DType::U8).to(device()), floats = Tensor::zeros({8}, DType::F32).to(device());
  EXPECT_THROW(cast(ctx(), pixels, floats), Error);
  EXPECT_THROW(cast(ctx(), floats, pixels), Error);
}

CUFACE_ON_EVERY_BACKEND(Elementwise);

// A ResNet block's backward adds its two branches' bf16 input gradients in place (add(dx, d, dx)).
TEST(ElementwiseCuda, AddsBf16InPlaceRoundingOnce) {
  CUFACE_REQUIRE_GPU();
  Context gpu(Device::CUDA);
  Tensor a = testing::random_tensor({100003}, 21), b = testing::random_tensor({100003}, 22, -1e-3f, 1e-3f);
  Tensor y = testing::upload(a, DType::BF16);
  const Tensor gb = testing::upload(b, DType::BF16);
  add(gpu, y, gb, y);
  gpu.synchronize();
  const Tensor got = y.to(Device::CPU);
  for (int64_t i = 0; i < a.numel(); ++i)
    ASSERT_EQ(got.data<bf16>()[i].bits, to_bf16(a.data<float>()[i] + b.data<float>()[i]).bits) << i;
}

}  // namespace
}  // namespace cuface
