// The emulated device itself: results of small kernels, and each planted defect caught with a clear
// message (docs/cuda_emulator.md lists them). Runs under both profiles (CUFACE_EMU_PROFILE).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda_emulator/device.h"
#include "tests/cuda_emulator/kernels.h"

namespace {

using namespace emulator_test;

// A device buffer filled from `host`.
float* upload(const std::vector<float>& host) {
  float* device = nullptr;
  EXPECT_EQ(cudaMalloc(&device, host.size() * sizeof(float)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(device, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  return device;
}

std::vector<float> download(const float* device, size_t n) {
  std::vector<float> host(n);
  EXPECT_EQ(cudaMemcpy(host.data(), device, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  return host;
}

std::vector<float> random_values(size_t n, uint32_t seed) {
  std::mt19937 random(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = uniform(random);
  return v;
}

TEST(Emulator, BlockReductionMatchesFloat64) {
  const int blocks = 7, block = 256;
  const std::vector<float> x = random_values(size_t(blocks) * block, 1);
  float* dx = upload(x);
  float* dout = nullptr;
  ASSERT_EQ(cudaMalloc(&dout, blocks * sizeof(float)), cudaSuccess);
  ASSERT_EQ(block_sums(dx, dout, blocks, block, true, nullptr), cudaSuccess);
  const std::vector<float> out = download(dout, blocks);
  for (int b = 0; b < blocks; ++b) {
    double sum = 0;
    for (int i = 0; i < block; ++i) sum += x[size_t(b * block + i)];
    EXPECT_NEAR(out[size_t(b)], sum, 1e-4) << "block " << b;
  }
  EXPECT_EQ(block_sums_static_shared_bytes(), 256 * sizeof(float));
  cudaFree(dx);
  cudaFree(dout);
}

TEST(EmulatorDefects, RemovedBarrierInABlockReductionIsARace) {
  const std::vector<float> x = random_values(256, 2);
  EXPECT_DEATH(
      {
        float* dx = upload(x);
        float* dout = nullptr;
        cudaMalloc(&dout, sizeof(float));
        block_sums(dx, dout, 1, 256, false, nullptr);
        cudaDeviceSynchronize();
      },
      "shared-memory race in kernel .*block_sums_kernel.*block \\(0, 0, 0\\).*missing __syncthreads");
}

TEST(EmulatorDefects, OneElementOutOfBoundsReadFaults) {
  const std::vector<float> x = random_values(64, 3);
  float* dx = upload(x);
  float* dy = nullptr;
  ASSERT_EQ(cudaMalloc(&dy, 64 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(shifted_copy(dx, dy, 64, 0, nullptr), cudaSuccess);
  EXPECT_EQ(download(dy, 64), x);
  EXPECT_DEATH(
      {
        shifted_copy(dx, dy, 64, 1, nullptr);
        cudaDeviceSynchronize();
      },
      "out-of-bounds read: 0 bytes past the end of a 256-byte allocation in kernel .*shifted_copy_kernel.*"
      "thread \\(63, 0, 0\\)");
}

TEST(EmulatorDefects, ShuffleMaskNamingAMissingLane) {
  const std::vector<float> x = random_values(64, 4);
  float* dx = upload(x);
  float* dout = nullptr;
  ASSERT_EQ(cudaMalloc(&dout, 2 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(warp_sums(dx, dout, 64, nullptr), cudaSuccess);
  const std::vector<float> out = download(dout, 2);
  for (int w = 0; w < 2; ++w) {
    double sum = 0;
    for (int l = 0; l < 32; ++l) sum += x[size_t(w * 32 + l)];
    EXPECT_NEAR(out[size_t(w)], sum, 1e-5);
  }
  EXPECT_DEATH(
      {
        warp_sums(dx, dout, 16, nullptr);
        cudaDeviceSynchronize();
      },
      "mask 0xffffffff names lane 16, which does not exist \\(the block has 16 threads\\)");
}

TEST(EmulatorDefects, DynamicSharedMemoryAbove48KiBNeedsTheAttribute) {
  const int n = 49 * 1024 / 4;
  const std::vector<float> x = random_values(size_t(n), 5);
  float* dx = upload(x);
  float* dy = nullptr;
  ASSERT_EQ(cudaMalloc(&dy, size_t(n) * 4), cudaSuccess);
  const cudaError_t refused = staged_double(dx, dy, n, size_t(n) * 4, false, nullptr);
  EXPECT_EQ(refused, cudaErrorInvalidValue);
  EXPECT_NE(std::string(cudaGetErrorString(refused)).find("cudaFuncAttributeMaxDynamicSharedMemorySize"),
            std::string::npos)
      << cudaGetErrorString(refused);
  ASSERT_EQ(staged_double(dx, dy, n, size_t(n) * 4, true, nullptr), cudaSuccess);
  const std::vector<float> y = download(dy, size_t(n));
  for (int i = 0; i < n; i += 997) EXPECT_EQ(y[size_t(i)], 2.0f * x[size_t(i)]);
}

// The review-limits bug: 48 KiB minus a little of dynamic shared memory, which the kernel's static
// shared memory pushes over the default limit.
TEST(EmulatorDefects, StaticPlusDynamicSharedMemoryOverTheDefaultLimit) {
  const int n = (48 * 1024 - 256) / 4;
  const std::vector<float> x = random_values(size_t(n), 8);
  float* dx = upload(x);
  float* dy = nullptr;
  ASSERT_EQ(cudaMalloc(&dy, size_t(n) * 4), cudaSuccess);
  EXPECT_DEATH(
      {
        staged_scale(dx, dy, n, size_t(n) * 4, nullptr);
        cudaDeviceSynchronize();
      },
      "staged_scale_kernel.* uses 512 bytes of static and 48896 bytes of dynamic shared memory: more than its "
      "limit of 49152 bytes");
}

TEST(EmulatorDefects, OffByOneSliceEndRunsPastTheEnd) {
  const int n = 1000;  // 7 slices of 143: the last one ends at 1001
  const std::vector<float> x = random_values(size_t(n), 9);
  float* dx = upload(x);
  float* dy = nullptr;
  ASSERT_EQ(cudaMalloc(&dy, size_t(n) * 4), cudaSuccess);
  ASSERT_EQ(sliced_scale(dx, dy, n, 7, false, nullptr), cudaSuccess);
  const std::vector<float> y = download(dy, size_t(n));
  for (int i = 0; i < n; ++i) ASSERT_EQ(y[size_t(i)], 3.0f * x[size_t(i)]);
  EXPECT_DEATH(
      {
        sliced_scale(dx, dy, n, 7, true, nullptr);
        cudaDeviceSynchronize();
      },
      "out-of-bounds read: 0 bytes past the end of a 4000-byte allocation in kernel .*sliced_scale_kernel");
}

TEST(EmulatorDefects, BarrierReachedByPartOfABlock) {
  float* dout = nullptr;
  ASSERT_EQ(cudaMalloc(&dout, 64 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(partial_barrier(dout, 64, nullptr), cudaSuccess);
  const std::vector<float> out = download(dout, 64);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(out[size_t(i)], float((i + 1) % 64));
  EXPECT_DEATH(
      {
        partial_barrier(dout, 40, nullptr);
        cudaDeviceSynchronize();
      },
      "partial_barrier_kernel.*(reached by only part of the block|exited while .* wait at __syncthreads)");
}

TEST(EmulatorDefects, HostReadOfDeviceMemory) {
  float* dx = upload({1.0f, 2.0f});
  EXPECT_DEATH(
      {
        volatile float value = dx[1];
        (void)value;
      },
      "host code read device memory without a copy \\(byte 4 of a 8-byte allocation\\)");
}

TEST(Emulator, SharedAtomicsCount) {
  std::vector<float> x = random_values(1000, 6);
  int expected = 0;
  for (float v : x) expected += v > 0.0f;
  float* dx = upload(x);
  int* dcount = nullptr;
  ASSERT_EQ(cudaMalloc(&dcount, sizeof(int)), cudaSuccess);
  ASSERT_EQ(count_positive(dx, dcount, 1000, nullptr), cudaSuccess);
  int count = 0;
  ASSERT_EQ(cudaMemcpy(&count, dcount, sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(count, expected);
}

TEST(Emulator, ClustersShareMemoryOnSm90Only) {
  int* dout = nullptr;
  ASSERT_EQ(cudaMalloc(&dout, 8 * sizeof(int)), cudaSuccess);
  const cudaError_t status = cluster_neighbours(dout, 8, 4, nullptr);
  if (!cuda_emulator::profile().clusters) {
    EXPECT_EQ(status, cudaErrorNotSupported);
    return;
  }
  ASSERT_EQ(status, cudaSuccess);
  std::vector<int> out(8);
  ASSERT_EQ(cudaMemcpy(out.data(), dout, sizeof(int) * 8, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(out, (std::vector<int>{1, 2, 3, 0, 1, 2, 3, 0}));
  EXPECT_EQ(cluster_neighbours(dout, 18, 9, nullptr), cudaErrorInvalidConfiguration);  // > 8: non-portable
  EXPECT_EQ(cluster_neighbours(dout, 6, 4, nullptr), cudaErrorInvalidConfiguration);   // grid not a multiple
}

TEST(Emulator, LaunchLimitsAreTheHardwares) {
  float* dx = upload(random_values(16, 7));
  EXPECT_EQ(warp_sums(dx, dx, 1025, nullptr), cudaErrorInvalidConfiguration);
  EXPECT_EQ(block_sums(dx, dx, 1, 0, true, nullptr), cudaErrorInvalidConfiguration);
}

TEST(Emulator, NewDeviceMemoryIsPoisoned) {
  float* dx = nullptr;
  ASSERT_EQ(cudaMalloc(&dx, 3 * sizeof(float)), cudaSuccess);
  for (float v : download(dx, 3)) EXPECT_TRUE(std::isnan(v));
}

// Stream order and events: a kernel on one stream reading what a copy on another stream writes.
class EmulatorStreams : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(cudaStreamCreateWithFlags(&copy_stream, cudaStreamNonBlocking), cudaSuccess);
    ASSERT_EQ(cudaStreamCreateWithFlags(&compute_stream, cudaStreamNonBlocking), cudaSuccess);
    ASSERT_EQ(cudaEventCreateWithFlags(&copied, cudaEventDisableTiming), cudaSuccess);
    ASSERT_EQ(cudaHostAlloc(&pinned, n * sizeof(float), cudaHostAllocDefault), cudaSuccess);
    for (int i = 0; i < n; ++i) pinned[i] = float(i);
    ASSERT_EQ(cudaMalloc(&dx, n * sizeof(float)), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&dy, n * sizeof(float)), cudaSuccess);
  }
  // Uploads `pinned` on the copy stream, adds one on the compute stream (waiting for the copy when
  // `wait`), and returns the result.
  std::vector<float> upload_then_add(bool wait) {
    EXPECT_EQ(cudaMemcpyAsync(dx, pinned, n * sizeof(float), cudaMemcpyHostToDevice, copy_stream), cudaSuccess);
    EXPECT_EQ(cudaEventRecord(copied, copy_stream), cudaSuccess);
    if (wait) {
      EXPECT_EQ(cudaStreamWaitEvent(compute_stream, copied, 0), cudaSuccess);
    }
    EXPECT_EQ(add_one(dx, dy, n, compute_stream), cudaSuccess);
    EXPECT_EQ(cudaStreamSynchronize(compute_stream), cudaSuccess);
    std::vector<float> y = download(dy, n);
    EXPECT_EQ(cudaStreamSynchronize(copy_stream), cudaSuccess);
    return y;
  }
  static constexpr int n = 300;
  cudaStream_t copy_stream = nullptr, compute_stream = nullptr;
  cudaEvent_t copied = nullptr;
  float* pinned = nullptr;
  float *dx = nullptr, *dy = nullptr;
};

TEST_F(EmulatorStreams, AMissingEventWaitGivesAWrongResult) {
  const std::vector<float> y = upload_then_add(false);
  EXPECT_TRUE(std::isnan(y[0])) << "the kernel ran before the copy it did not wait for: " << y[0];
}

TEST_F(EmulatorStreams, TheEventWaitOrdersTheStreams) {
  const std::vector<float> y = upload_then_add(true);
  for (int i = 0; i < n; ++i) ASSERT_EQ(y[size_t(i)], float(i) + 1.0f);
}

TEST_F(EmulatorStreams, AHostReadWithoutASynchroniseSeesNoResult) {
  ASSERT_EQ(cudaMemcpy(dx, pinned, n * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  float* result = nullptr;
  ASSERT_EQ(cudaHostAlloc(&result, n * sizeof(float), cudaHostAllocDefault), cudaSuccess);
  ASSERT_EQ(add_one(dx, dy, n, compute_stream), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(result, dy, n * sizeof(float), cudaMemcpyDeviceToHost, compute_stream), cudaSuccess);
  EXPECT_TRUE(std::isnan(result[5])) << "read before cudaStreamSynchronize";
  ASSERT_EQ(cudaStreamSynchronize(compute_stream), cudaSuccess);
  EXPECT_EQ(result[5], 6.0f);
}

TEST_F(EmulatorStreams, EventQueryPollingEnds) {
  ASSERT_EQ(add_one(dx, dy, n, compute_stream), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(copied, compute_stream), cudaSuccess);
  int polls = 0;
  while (cudaEventQuery(copied) == cudaErrorNotReady) ++polls;
  EXPECT_EQ(polls, 1);
}

}  // namespace
