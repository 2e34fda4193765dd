#include <gtest/gtest.h>

#include "common/backends.h"
#include "common/reference.h"
#include "engine/tensor.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"

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

// ---- CUDA plumbing: copies run on the legacy default stream, kernels on the context's stream ------

// A copy to the host issued right after a kernel, without synchronize, must see the kernel's result:
// the context's stream is a blocking stream, so the legacy-stream copy waits for it.
TEST(TensorCuda, CopiesToTheHostWaitForQueuedKernels) {
  CUFACE_REQUIRE_GPU();
  Context ctx(Device::CUDA);
  const int64_t n = 2048;  // ~17 GFLOP: the GEMM is still running when the copy is issued
  Tensor a = testing::random_tensor({n, n}, 41);
  Tensor identity = Tensor::zeros({n, n});
  for (int64_t i = 0; i < n; ++i) identity.data<float>()[i * n + i] = 1.0f;
  Tensor da = a.to(Device::CUDA), di = identity.to(Device::CUDA);
  Tensor c = Tensor::empty({n, n}, DType::F32, Device::CUDA);
  testing::poison(c);
  gemm(ctx, false, false, 1.0f, da, di, 0.0f, c);  // fp32: A I == A exactly
  const Tensor back = c.to(Device::CPU);
  for (int64_t i = 0; i < a.numel(); ++i) ASSERT_EQ(back.data<float>()[i], a.data<float>()[i]) << i;
}

// Tensor::zeros on a block that queued kernels were still writing: the memset must come after them.
TEST(TensorCuda, ZerosOnAReusedBlockAreZero) {
  CUFACE_REQUIRE_GPU();
  Context ctx(Device::CUDA);
  for (int round = 0; round < 3; ++round) {
    {
      Tensor busy = Tensor::empty({1 << 22}, DType::F32, Device::CUDA);
      for (int k = 0; k < 20; ++k) fill(ctx, busy, 1.0f + float(k));  // queued, not finished
    }  // the block goes back to the cache while the fills may still run
    Tensor z = Tensor::zeros({1 << 22}, DType::F32, Device::CUDA);
    const Tensor host = z.to(Device::CPU);
    for (int64_t i = 0; i < host.numel(); ++i) ASSERT_EQ(host.data<float>()[i], 0.0f) << "round " << round << " " << i;
  }
}

// copy_from between every pair of devices, into and out of row slices (offset views), with pinned and
// plain host memory.
TEST(TensorCuda, CopyFromSlicesPinnedAndDeviceToDevice) {
  CUFACE_REQUIRE_GPU();
  const Tensor values = testing::random_tensor({10, 7}, 43);
  Tensor pinned = Tensor::empty_pinned({10, 7}, DType::F32);
  ASSERT_TRUE(pinned.is_pinned());
  pinned.copy_from(values);
  Tensor device = Tensor::zeros({10, 7}, DType::F32, Device::CUDA);
  Tensor rows = device.slice(3, 8);
  rows.copy_from(pinned.slice(0, 5));                        // pinned host -> device view
  Tensor other = Tensor::zeros({6, 7}, DType::F32, Device::CUDA);
  Tensor target = other.slice(1, 6);
  target.copy_from(rows);                                     // device view -> device view
  Tensor plain = Tensor::zeros({6, 7});
  plain.copy_from(other);                                     // device -> plain host
  Tensor pinned_back = Tensor::empty_pinned({10, 7}, DType::F32);
  pinned_back.copy_from(device);                              // device -> pinned host
  for (int64_t r = 0; r < 10; ++r)
    for (int64_t c = 0; c < 7; ++c) {
      const float want = r >= 3 && r < 8 ? values.data<float>()[(r - 3) * 7 + c] : 0.0f;
      ASSERT_EQ(pinned_back.data<float>()[r * 7 + c], want) << r << "," << c;
    }
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t c = 0; c < 7; ++c) {
      const float want = r >= 1 ? values.data<float>()[(r - 1) * 7 + c] : 0.0f;
      ASSERT_EQ(plain.data<float>()[r * 7 + c], want) << r << "," << c;
    }
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
