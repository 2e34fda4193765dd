#include <gtest/gtest.h>

#include "common/backends.h"
#include "common/reference.h"
#include "engine/tensor.h"
#include "kernels/elementwise.h"

namespace cuface {
namespace {

TEST(Shape, NumelRankAndString) {
  Shape s{2, 3, 5, 7};
  EXPECT_EQ(s.rank, 4);
  EXPECT_EQ(s.numel(), 210);
  EXPECT_EQ(s.str(), "[2, 3, 5, 7]");
  EXPECT_EQ(Shape{}.numel(), 1);  // a scalar
  EXPECT_THROW((Shape{1, 2, 3, 4, 5}), Error);
  EXPECT_THROW((Shape{-1}), Error);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor t = testing::random_tensor({4, 3}, 1);
  Tensor v = t.reshape({2, 6});
  EXPECT_EQ(v.raw(), t.raw());
  Tensor rows = t.slice(1, 3);
  EXPECT_EQ(rows.shape(), (Shape{2, 3}));
  EXPECT_EQ(rows.data<float>(), t.data<float>() + 3);
  rows.data<float>()[0] = 42.0f;
  EXPECT_EQ(t.data<float>()[3], 42.0f);  // writes through the view
  EXPECT_THROW(t.reshape({5, 3}), Error);
  EXPECT_THROW(t.slice(2, 5), Error);
}

TEST(Tensor, TypedAccessChecksDType) {
  Tensor t = Tensor::zeros({3}, DType::I32);
  EXPECT_NO_THROW(t.data<int32_t>());
  EXPECT_THROW(t.data<float>(), Error);
  EXPECT_EQ(t.bytes(), 12u);
}

TEST(Tensor, StorageOutlivesOriginalHandle) {
  Tensor view;
  {
    Tensor t = Tensor::zeros({8});
    t.data<float>()[7] = 5.0f;
    view = t.slice(4, 8);
  }
  EXPECT_EQ(view.data<float>()[3], 5.0f);
}

TEST(Tensor, FromBlobRunsRelease) {
  bool released = false;
  float buffer[4] = {1, 2, 3, 4};
  {
    Tensor t = Tensor::from_blob(buffer, {2, 2}, DType::F32, Device::CPU, [&](void*) { released = true; });
    EXPECT_EQ(t.data<float>()[3], 4.0f);
  }
  EXPECT_TRUE(released);
}

TEST(Tensor, PinnedHostMemoryIsUsable) {
  Tensor t = Tensor::empty_pinned({16, 3}, DType::U8);
  EXPECT_EQ(t.device(), Device::CPU);
  EXPECT_EQ(t.is_pinned(), cuda_device_count() > 0);
  t.data<uint8_t>()[47] = 9;
  EXPECT_EQ(t.clone().data<uint8_t>()[47], 9);
}

TEST(DType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(to_bf16(1.0f).bits, 0x3f80);
  EXPECT_EQ(to_float(to_bf16(3.140625f)), 3.140625f);  // exactly representable
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even gives 1.
  EXPECT_EQ(to_float(to_bf16(1.0f + 1.0f / 256)), 1.0f);
  EXPECT_EQ(to_float(to_bf16(1.0f + 3.0f / 256)), 1.0f + 4.0f / 256);
  EXPECT_TRUE(std::isnan(to_float(to_bf16(NAN))));
}

TEST(DType, F16RoundTripsAndRounds) {
  for (float v : {0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f, 5.960464477539063e-08f})
    EXPECT_EQ(to_float(to_f16(v)), v) << v;
  EXPECT_EQ(to_f16(1.0f).bits, 0x3c00);
  EXPECT_TRUE(std::isinf(to_float(to_f16(70000.0f))));
  EXPECT_EQ(to_float(to_f16(1.0f + 1.0f / 2048)), 1.0f);  // tie to even
}

class TensorBackend : public testing::BackendTest {};

TEST_P(TensorBackend, CopiesRoundTripThroughDevice) {
  Tensor host = testing::random_tensor({3, 5, 7, 2}, 7);
  Tensor there = host.to(device());
  EXPECT_EQ(there.device(), device());
  Tensor back = there.to(Device::CPU);
  for (int64_t i = 0; i < host.numel(); ++i) ASSERT_EQ(back.data<float>()[i], host.data<float>()[i]);
}

TEST_P(TensorBackend, ElementwiseKernelsMatchDoubleReference) {
  const int64_t n = 1003;
  Tensor a = testing::random_tensor({n}, 1), b = testing::random_tensor({n}, 2);
  Tensor da = a.to(device()), db = b.to(device());
  Tensor y = Tensor::empty({n}, DType::F32, device());
  testing::poison(y);
  add(ctx(), da, db, y);
  axpy(ctx(), 0.5f, da, y);  // y = a + b + 0.5 a
  scale(ctx(), 2.0f, y);     // y = 3 a + 2 b
  Tensor out = y.to(Device::CPU);
  for (int64_t i = 0; i < n; ++i) {
    double expected = 3.0 * a.data<float>()[i] + 2.0 * b.data<float>()[i];
    ASSERT_NEAR(out.data<float>()[i], expected, 1e-5) << i;
  }
  fill(ctx(), y, 1.5f);
  EXPECT_EQ(y.to(Device::CPU).data<float>()[n - 1], 1.5f);
}

TEST_P(TensorBackend, CastToBf16MatchesHostRounding) {
  Tensor a = testing::random_tensor({257}, 3, -100, 100);
  Tensor half = Tensor::empty({257}, DType::BF16, device());
  cast(ctx(), a.to(device()), half);
  Tensor back = Tensor::empty({257}, DType::F32, device());
  cast(ctx(), half, back);
  Tensor host = back.to(Device::CPU);
  for (int64_t i = 0; i < 257; ++i)
    ASSERT_EQ(host.data<float>()[i], to_float(to_bf16(a.data<float>()[i])));
}

CUFACE_ON_EVERY_BACKEND(TensorBackend);

TEST(Allocator, CachesBlocksAndTracksPeak) {
  CUFACE_REQUIRE_GPU();
  auto& allocator = CudaCachingAllocator::instance();
  { Tensor warm = Tensor::empty({1 << 20}, DType::F32, Device::CUDA); }
  size_t mallocs = allocator.stats().cuda_malloc_calls;
  allocator.reset_peak();
  for (int i = 0; i < 10; ++i) Tensor t = Tensor::empty({1 << 20}, DType::F32, Device::CUDA);
  EXPECT_EQ(allocator.stats().cuda_malloc_calls, mallocs);  // reused, no new cudaMalloc
  EXPECT_GE(allocator.stats().peak_bytes_in_use, size_t(4) << 20);
}

TEST(Allocator, CudaAllocationWithoutGpuIsAClearError) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is present";
  try {
    Tensor::empty({4}, DType::F32, Device::CUDA);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no CUDA device"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace cuface
