// Dropout kernel: the mask against the sequential Philox reader (an independent path to the same
// stream), its statistics and purity, and bit-identical masks on CUDA and CPU, with the step given as a
// number or as a number plus a device counter (replayed from a CUDA graph).
#include <gtest/gtest.h>

#include <cmath>

#include "common/backends.h"
#include "common/device_compare.h"
#include "common/reference.h"
#include "engine/cuda_graph.h"
#include "engine/philox.h"
#include "kernels/dropout.h"

namespace cuface {
namespace {

using testing::random_tensor;
using testing::relative_error;

// x = 1 everywhere: y is the mask times 1 / (1 - p).
Tensor apply_to_ones(Context& ctx, int64_t n, float p, uint64_t seed, uint64_t step) {
  Tensor ones = Tensor::empty({n});
  for (int64_t i = 0; i < n; ++i) ones.data<float>()[i] = 1.0f;
  Tensor y = Tensor::empty({n});
  dropout(ctx, ones, y, p, seed, step);
  return y;
}

TEST(DropoutCpu, MaskIsThePhiloxStreamOfSeedAndStep) {
  Context ctx(Device::CPU);
  const float p = 0.4f;
  const uint64_t seed = 0x123456789abcdefull, step = (uint64_t(1) << 40) + 17;  // both halves of each word used
  Tensor x = random_tensor({3, 7, 5, 3}, 1);                                    // 315 elements: not a multiple of 4
  Tensor y = Tensor::empty(x.shape());
  dropout(ctx, x, y, p, seed, step);
  Philox stream(seed, step);
  const float scale = 1.0f / (1.0f - p);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const bool keep = stream.next_float() >= p;
    ASSERT_EQ(y.data<float>()[i], keep ? x.data<float>()[i] * scale : 0.0f) << i;
  }
}

// A step given as number + counter draws the mask of the sum (the counter's 32 bits added to a number
// beyond them).
TEST(DropoutCpu, AStepCounterAddsToTheNumber) {
  Context ctx(Device::CPU);
  Tensor x = random_tensor({3, 7, 5, 3}, 1), want = Tensor::empty(x.shape()), got = Tensor::empty(x.shape());
  const uint64_t number = (uint64_t(1) << 40) + 5;
  dropout(ctx, x, want, 0.4f, 77, number + 12);
  dropout(ctx, x, got, 0.4f, 77, {number, testing::step_counter(12)});
  EXPECT_EQ(relative_error(got, want), 0.0);
  EXPECT_THROW(dropout(ctx, x, got, 0.4f, 77, {number, Tensor::zeros({1})}), Error);  // f32, not i32
}

TEST(DropoutCpu, KeepsOneMinusPAndPreservesTheMean) {
  Context ctx(Device::CPU);
  const int64_t n = 200000;
  for (float p : {0.1f, 0.4f, 0.5f}) {
    Tensor y = apply_to_ones(ctx, n, p, 7, 3);
    int64_t kept = 0;
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      kept += y.data<float>()[i] != 0.0f;
      sum += y.data<float>()[i];
    }
    // Binomial: 4 standard deviations of the kept fraction (fixed seed, so this never flickers).
    const double sigma = std::sqrt(double(p) * (1 - p) / double(n));
    EXPECT_NEAR(double(kept) / double(n), 1.0 - p, 4 * sigma) << p;
    EXPECT_NEAR(sum / double(n), 1.0, 4 * sigma / (1 - p)) << p;  // inverted dropout: E[y] = x
  }
}

TEST(DropoutCpu, SameStepSameMaskOtherStepOrSeedAnotherMask) {
  Context ctx(Device::CPU);
  const int64_t n = 4096;
  Tensor a = apply_to_ones(ctx, n, 0.5f, 11, 5), again = apply_to_ones(ctx, n, 0.5f, 11, 5);
  Tensor next_step = apply_to_ones(ctx, n, 0.5f, 11, 6), other_seed = apply_to_ones(ctx, n, 0.5f, 12, 5);
  EXPECT_EQ(relative_error(again, a), 0.0);
  auto agreement = [&](const Tensor& b) {
    int64_t same = 0;
    for (int64_t i = 0; i < n; ++i) same += (a.data<float>()[i] != 0.0f) == (b.data<float>()[i] != 0.0f);
    return double(same) / double(n);
  };
  // Independent masks agree on about half the elements (p^2 + (1-p)^2 = 0.5).
  EXPECT_NEAR(agreement(next_step), 0.5, 0.05);
  EXPECT_NEAR(agreement(other_seed), 0.5, 0.05);
}

TEST(DropoutCpu, BackwardIsTheSameCallOnTheGradient) {
  Context ctx(Device::CPU);
  Tensor x = random_tensor({64, 33}, 2, 0.5f, 1.5f), dy = random_tensor({64, 33}, 3, 0.5f, 1.5f);
  Tensor y = Tensor::empty(x.shape()), dx = Tensor::empty(x.shape());
  dropout(ctx, x, y, 0.3f, 99, 4);
  dropout(ctx, dy, dx, 0.3f, 99, 4);
  const float scale = 1.0f / 0.7f;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const bool kept = y.data<float>()[i] != 0.0f;  // x is never 0
    ASSERT_EQ(dx.data<float>()[i], kept ? dy.data<float>()[i] * scale : 0.0f) << i;
  }
}

TEST(DropoutCpu, ZeroProbabilityIsTheIdentityAndInPlaceWorks) {
  Context ctx(Device::CPU);
  Tensor x = random_tensor({5, 9}, 4), y = Tensor::empty({5, 9});
  dropout(ctx, x, y, 0.0f, 1, 1);
  EXPECT_EQ(relative_error(y, x), 0.0);
  Tensor z = Tensor::empty({5, 9}), inplace = x.clone();
  dropout(ctx, x, z, 0.5f, 1, 1);
  dropout(ctx, inplace, inplace, 0.5f, 1, 1);
  EXPECT_EQ(relative_error(inplace, z), 0.0);
}

TEST(DropoutChecks, RejectsBadArguments) {
  Context ctx(Device::CPU);
  Tensor x = Tensor::zeros({8}), y = Tensor::zeros({8}), short_y = Tensor::zeros({7});
  EXPECT_THROW(dropout(ctx, x, y, 1.0f, 0, 0), Error);
  EXPECT_THROW(dropout(ctx, x, y, -0.1f, 0, 0), Error);
  EXPECT_THROW(dropout(ctx, x, short_y, 0.5f, 0, 0), Error);
}

// The same seed and step give the same mask on both backends, element for element; f32 outputs are
// bit-identical (one multiply by the same float), bf16 outputs too (the same rounding of it).
TEST(DropoutCuda, MasksAndOutputsIdenticalToCpu) {
  CUFACE_REQUIRE_GPU();
  Context cpu(Device::CPU), gpu(Device::CUDA);
  for (DType dtype : {DType::F32, DType::BF16}) {
    for (const Shape& shape : {Shape{256, 2048}, Shape{3, 7, 5, 3}, Shape{1}}) {
      Tensor x = random_tensor(shape, 5);
      Tensor d_x = testing::upload(x, dtype);
      Tensor y = Tensor::empty(shape), d_y = testing::poisoned(shape, dtype);
      dropout(cpu, x, y, 0.4f, 0xfeedfacecafebeefull, 123456789012ull);
      dropout(gpu, d_x, d_y, 0.4f, 0xfeedfacecafebeefull, 123456789012ull);
      gpu.synchronize();
      Tensor got = testing::host_f32(d_y);
      for (int64_t i = 0; i < x.numel(); ++i) {
        const float want = dtype == DType::F32 ? y.data<float>()[i] : to_float(to_bf16(y.data<float>()[i]));
        ASSERT_EQ(got.data<float>()[i], want) << dtype_name(dtype) << " " << shape.str() << " element " << i;
      }
    }
  }
}

// The counter is read when the kernel runs: dropout captured in a CUDA graph with a counter, replayed
// after the host wrote steps 3 and 8 into it, gives the CPU's masks of steps 3 and 8, bit for bit (a
// kernel that took the counter's value at the capture would repeat step 3's mask).
TEST(DropoutCuda, ACapturedStepCounterIsReadAtEachReplay) {
  CUFACE_REQUIRE_GPU();
  Context cpu(Device::CPU), gpu(Device::CUDA);
  Tensor x = random_tensor({37, 11}, 6);
  const Tensor d_x = x.to(Device::CUDA);
  Tensor d_y = Tensor::empty(x.shape(), DType::F32, Device::CUDA);
  Tensor counter = Tensor::zeros({1}, DType::I32, Device::CUDA);
  CudaGraph graph;
  std::string why;
  ASSERT_TRUE(graph.capture(gpu, [&] { dropout(gpu, d_x, d_y, 0.4f, 21, {1000, counter}); }, &why)) << why;
  for (int32_t step : {3, 8}) {
    counter.copy_from(testing::step_counter(step));
    graph.replay(gpu);
    gpu.synchronize();
    Tensor want = Tensor::empty(x.shape());
    dropout(cpu, x, want, 0.4f, 21, 1000 + uint64_t(step));
    EXPECT_EQ(relative_error(d_y.to(Device::CPU), want), 0.0) << "step " << step;
  }
}

}  // namespace
}  // namespace cuface
