#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <string>

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

// ---- Host caching allocator ----------------------------------------------------------------------

// Blocks of 2 MiB or more are whole, aligned 2 MiB pages (transparent huge pages where the kernel has
// them); smaller ones whole 4 KiB pages.
TEST(HostAllocator, LargeBlocksAreWholeHugePages) {
  const size_t huge = size_t(2) << 20;
  EXPECT_EQ(host_block_size(1), 4096u);
  EXPECT_EQ(host_block_size(4097), 8192u);
  EXPECT_EQ(host_block_size(huge - 1), huge);
  EXPECT_EQ(host_block_size(huge + 1), 2 * huge);
  void* block = allocate_host_block(host_block_size(5 * (huge / 2)));  // 5 MiB: three huge pages
  ASSERT_NE(block, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(block) % huge, 0u);
  std::memset(block, 3, 3 * huge);
  std::free(block);
  HostCachingAllocator allocator;
  void* tensor = allocator.allocate(huge + 1);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(tensor) % huge, 0u);
  EXPECT_EQ(allocator.stats().bytes_reserved, 2 * huge);
  allocator.free(tensor);
}

TEST(HostAllocator, ASteadyLoopReusesItsBlocks) {
  HostCachingAllocator allocator;
  const size_t big = size_t(3) << 20, big_block = size_t(4) << 20;  // whole 2 MiB pages
  void* first = allocator.allocate(big);
  allocator.free(first);
  const AllocatorStats warm = allocator.stats();
  for (int step = 0; step < 5; ++step) {
    void* a = allocator.allocate(big);
    void* b = allocator.allocate(size_t(1) << 20);  // too small for a's block: one of its own
    EXPECT_EQ(a, first);
    EXPECT_NE(b, a);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b) % 64, 0u);
    std::memset(a, 1, big);
    std::memset(b, 2, size_t(1) << 20);
    allocator.free(b);
    allocator.free(a);
  }
  EXPECT_EQ(allocator.stats().system_allocations, warm.system_allocations + 1);  // b's, once
  EXPECT_EQ(allocator.stats().peak_bytes_in_use, big_block + (size_t(1) << 20));
  EXPECT_EQ(allocator.stats().bytes_in_use, 0u);
  EXPECT_EQ(allocator.bytes_cached(), big_block + (size_t(1) << 20));
}

TEST(HostAllocator, SmallBlocksAreMallocsAndBigOnesAreNotSpentOnSmallRequests) {
  HostCachingAllocator allocator;
  void* small = allocator.allocate(1000);
  allocator.free(small);
  EXPECT_EQ(allocator.stats().system_allocations, 0u);  // malloc's own, not counted or cached
  EXPECT_EQ(allocator.bytes_cached(), 0u);
  void* big = allocator.allocate(size_t(10) << 20);
  allocator.free(big);
  void* half = allocator.allocate(size_t(3) << 20);  // 4 MiB, under half the free block: a block of its own
  EXPECT_NE(half, big);
  allocator.free(half);
  EXPECT_EQ(allocator.stats().system_allocations, 2u);
}

// Sizes that keep growing cannot reuse the smaller free blocks: the cache stops at the most ever in use.
TEST(HostAllocator, TheCacheNeverHoldsMoreThanThePeakInUse) {
  HostCachingAllocator allocator;
  size_t most = 0;
  for (size_t mib = 1; mib <= 64; mib *= 2) {
    const size_t bytes = mib << 20;
    allocator.free(allocator.allocate(bytes));
    most = std::max(most, bytes);
    EXPECT_LE(allocator.bytes_cached(), most) << mib << " MiB";
  }
  EXPECT_EQ(allocator.bytes_cached(), size_t(64) << 20);  // the smaller ones made room for the last
  EXPECT_EQ(allocator.stats().bytes_reserved, allocator.bytes_cached());
  allocator.release_cached();
  EXPECT_EQ(allocator.bytes_cached(), 0u);
  EXPECT_EQ(allocator.stats().bytes_reserved, 0u);
}

// This process's address space (VmSize), in bytes.
rlim_t virtual_memory_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmSize:", 0) == 0) return rlim_t(std::stoull(line.substr(7))) * 1024;
  return 0;
}

// Out of memory with a cache that does not fit the request: the cache is given back and the request
// served (in a child process with its address space capped above what it uses now).
// Exits 0 when a request that fits only without the cache is served and the cache was given back.
[[noreturn]] void allocate_beside_a_cache_under_a_cap() {
  HostCachingAllocator allocator;
  const rlimit limit{virtual_memory_bytes() + (rlim_t(300) << 20), RLIM_INFINITY};
  if (setrlimit(RLIMIT_AS, &limit) != 0) std::exit(3);
  allocator.free(allocator.allocate(size_t(200) << 20));  // cached
  void* bigger = allocator.allocate(size_t(250) << 20);   // 200 + 250 MiB do not fit
  std::exit(bigger != nullptr && allocator.bytes_cached() == 0 ? 0 : 4);
}

TEST(HostAllocatorDeathTest, OutOfMemoryGivesTheCacheBackAndRetries) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(allocate_beside_a_cache_under_a_cap(), ::testing::ExitedWithCode(0), "");
}

TEST(HostAllocator, CpuTensorsUseTheCache) {
  auto& allocator = HostCachingAllocator::instance();
  { Tensor warm = Tensor::empty({1 << 20}, DType::F32); }
  const size_t mallocs = allocator.stats().system_allocations;
  for (int i = 0; i < 10; ++i) {
    Tensor t = Tensor::zeros({1 << 20}, DType::F32);
    EXPECT_EQ(t.data<float>()[12345], 0.0f);
  }
  EXPECT_EQ(allocator.stats().system_allocations, mallocs);
}

TEST(Allocator, CachesBlocksAndTracksPeak) {
  CUFACE_REQUIRE_GPU();
  auto& allocator = CudaCachingAllocator::instance();
  { Tensor warm = Tensor::empty({1 << 20}, DType::F32, Device::CUDA); }
  size_t mallocs = allocator.stats().system_allocations;
  allocator.reset_peak();
  for (int i = 0; i < 10; ++i) Tensor t = Tensor::empty({1 << 20}, DType::F32, Device::CUDA);
  EXPECT_EQ(allocator.stats().system_allocations, mallocs);  // reused, no new cudaMalloc
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
