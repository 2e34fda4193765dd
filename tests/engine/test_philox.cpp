#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include "common/backends.h"
#include "engine/philox.h"
#include "kernels/random.h"

namespace cuface {
namespace {

void expect_block(const PhiloxOutput& out, uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  EXPECT_EQ(out.v[0], a);
  EXPECT_EQ(out.v[1], b);
  EXPECT_EQ(out.v[2], c);
  EXPECT_EQ(out.v[3], d);
}

// Random123's kat_vectors, lines "philox4x32 10 <counter x4> <key x2> <expected x4>".
TEST(Philox, Random123KnownAnswers) {
  const uint32_t zeros[4] = {0, 0, 0, 0};
  expect_block(philox4x32_10(zeros, 0, 0), 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8);
  const uint32_t ones[4] = {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff};
  expect_block(philox4x32_10(ones, 0xffffffff, 0xffffffff), 0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd);
  expect_block(philox4x32_10(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0), 0xd16cfe09,
               0x94fdcceb, 0x5001e420, 0x24126ea1);
}

// The stream layout documented in philox.h: key = seed, counter = {block, subsequence}.
TEST(Philox, StreamIsBlocksOfCounterAndSubsequence) {
  const uint64_t seed = 0x0123456789abcdefull, subsequence = 0xfedcba9876543210ull;
  Philox rng(seed, subsequence);
  for (uint32_t block = 0; block < 3; ++block) {
    const PhiloxOutput expected = philox4x32_10(block, 0, 0x76543210, 0xfedcba98, 0x89abcdef, 0x01234567);
    for (int k = 0; k < 4; ++k) EXPECT_EQ(rng.next_u32(), expected.v[k]) << "block " << block << " word " << k;
  }
}

TEST(Philox, OffsetSkipsAheadAndCarriesIntoTheHighBlockWord) {
  Philox reference(7, 3);
  std::vector<uint32_t> stream(40);
  for (auto& x : stream) x = reference.next_u32();
  for (uint64_t offset = 0; offset < 20; ++offset) {
    Philox rng(7, 3, offset);
    for (size_t i = offset; i < offset + 20; ++i) ASSERT_EQ(rng.next_u32(), stream[i]) << "offset " << offset;
  }
  // The last word of block 2^32 - 1 is followed by block 2^32: counter words {0, 1}.
  Philox rng(7, 3, 4 * 0xffffffffull + 3);
  EXPECT_EQ(rng.next_u32(), philox4x32_10(0xffffffff, 0, 3, 0, 7, 0).v[3]);
  EXPECT_EQ(rng.next_u32(), philox4x32_10(0, 1, 3, 0, 7, 0).v[0]);
}

TEST(Philox, StreamsAreReproducibleAndDistinct) {
  Philox a(42, 5), b(42, 5), other_subsequence(42, 6), other_seed(43, 5);
  int equal_to_other_subsequence = 0, equal_to_other_seed = 0;
  for (int i = 0; i < 1000; ++i) {
    const uint32_t x = a.next_u32();
    ASSERT_EQ(x, b.next_u32());
    equal_to_other_subsequence += x == other_subsequence.next_u32();
    equal_to_other_seed += x == other_seed.next_u32();
  }
  EXPECT_LE(equal_to_other_subsequence, 1);
  EXPECT_LE(equal_to_other_seed, 1);
}

TEST(Philox, U64IsTwoConsecutiveU32LowFirst) {
  Philox a(9), b(9);
  for (int i = 0; i < 10; ++i) {
    const uint64_t low = b.next_u32(), high = b.next_u32();
    EXPECT_EQ(a.next_u64(), low | (high << 32));
  }
}

TEST(Philox, UniformFloatHasTheMomentsOfU01) {
  Philox rng(1234);
  const int n = 1000000;
  double sum = 0, sum_sq = 0;
  float lowest = 1, highest = 0;
  for (int i = 0; i < n; ++i) {
    const float u = rng.next_float();
    sum += u;
    sum_sq += double(u) * u;
    lowest = std::min(lowest, u);
    highest = std::max(highest, u);
  }
  const double mean = sum / n, variance = sum_sq / n - mean * mean;
  // Standard errors: sqrt(1/12/n) = 2.9e-4 for the mean, about 9e-5 for the variance; allow 5 of them.
  EXPECT_NEAR(mean, 0.5, 1.5e-3);
  EXPECT_NEAR(variance, 1.0 / 12, 5e-4);
  EXPECT_GE(lowest, 0.0f);
  EXPECT_LT(highest, 1.0f);
  EXPECT_EQ(u32_to_unit_float(0xffffffffu), 1.0f - 1.0f / 16777216);  // the largest value is below 1
}

TEST(Philox, NormalHasTheMomentsOfN01) {
  Philox rng(99, 1);
  const int n = 1000000;
  double sum = 0, sum_sq = 0, sum_4 = 0;
  for (int i = 0; i < n; ++i) {
    const double z = rng.next_normal();
    ASSERT_TRUE(std::isfinite(z));
    sum += z;
    sum_sq += z * z;
    sum_4 += z * z * z * z;
  }
  // Standard errors 1e-3 (mean), 1.4e-3 (second moment), 1e-2 (fourth moment = 3).
  EXPECT_NEAR(sum / n, 0.0, 5e-3);
  EXPECT_NEAR(sum_sq / n, 1.0, 7e-3);
  EXPECT_NEAR(sum_4 / n, 3.0, 5e-2);
}

TEST(Philox, UniformIntStaysInRangeAndIsUnbiased) {
  Philox rng(5);
  std::vector<int> counts(7);
  const int draws = 70000;
  for (int i = 0; i < draws; ++i) {
    const uint32_t x = rng.uniform_int(7);
    ASSERT_LT(x, 7u);
    ++counts[x];
  }
  double chi_square = 0;
  for (int c : counts) chi_square += (c - 10000.0) * (c - 10000.0) / 10000.0;
  EXPECT_LT(chi_square, 22.5);  // chi-square, 6 degrees of freedom, p = 0.001

  // n = 3 * 2^30: taking x % n would put half of all results below 2^30 instead of a third.
  const uint32_t n = 0xC0000000u;
  int below = 0;
  for (int i = 0; i < 100000; ++i) {
    const uint32_t x = rng.uniform_int(n);
    ASSERT_LT(x, n);
    below += x < (1u << 30);
  }
  EXPECT_NEAR(below / 100000.0, 1.0 / 3, 0.0075);  // 5 standard errors
  EXPECT_EQ(rng.uniform_int(1), 0u);
}

TEST(Philox, PermutationIsReproducibleAndUniform) {
  std::vector<int64_t> p = philox_permutation(1000, 17, 0);
  std::vector<int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(sorted[size_t(i)], i);
  EXPECT_EQ(p, philox_permutation(1000, 17, 0));
  EXPECT_NE(p, philox_permutation(1000, 17, 1));
  EXPECT_NE(p, philox_permutation(1000, 18, 0));
  EXPECT_TRUE(philox_permutation(0, 1, 0).empty());
  EXPECT_THROW(philox_permutation(-1, 1, 0), Error);

  // All 24 orders of 4 items, each once in 24 on average over many subsequences (epochs).
  std::map<std::vector<int64_t>, int> counts;
  const int trials = 48000;
  for (int epoch = 0; epoch < trials; ++epoch) ++counts[philox_permutation(4, 3, uint64_t(epoch))];
  ASSERT_EQ(counts.size(), 24u);
  double chi_square = 0;
  for (const auto& [order, c] : counts) chi_square += (c - 2000.0) * (c - 2000.0) / 2000.0;
  EXPECT_LT(chi_square, 49.7);  // chi-square, 23 degrees of freedom, p = 0.001
}

// The fill kernels on every backend reproduce a plain host loop over one Philox stream.
class RandomFill : public testing::BackendTest {};

TEST_P(RandomFill, UniformEqualsTheHostStreamBitForBit) {
  for (int64_t n : {1, 3, 4, 1001, 100003}) {
    Tensor y = Tensor::empty({n}, DType::F32, device());
    fill_uniform(ctx(), y, 2024, 11, -0.5f, 2.0f);
    ctx().synchronize();  // Tensor::to copies on another stream
    Tensor host = y.to(Device::CPU);
    Philox rng(2024, 11);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(host.data<float>()[i], std::fma(rng.next_float(), 2.5f, -0.5f)) << "n " << n << " element " << i;
  }
}

TEST_P(RandomFill, NormalEqualsTheHostStream) {
  // Host and CPU kernel share the math library: equal bits. CUDA's logf/cosf: within a few 1e-7.
  const float tolerance = device() == Device::CPU ? 0.0f : 1e-5f;
  for (int64_t n : {1, 2, 5, 100001}) {
    Tensor y = Tensor::empty({n}, DType::F32, device());
    fill_normal(ctx(), y, 77, 3, 1.0f, 0.5f);
    ctx().synchronize();
    Tensor host = y.to(Device::CPU);
    Philox rng(77, 3);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_NEAR(host.data<float>()[i], std::fma(0.5f, rng.next_normal(), 1.0f), tolerance)
          << "n " << n << " element " << i;
  }
}

// A fill from element `first` on is that part of the whole fill (odd and even starts).
TEST_P(RandomFill, NormalFromAnElementOnIsThatPartOfTheWholeFill) {
  const float tolerance = device() == Device::CPU ? 0.0f : 1e-5f;
  Tensor whole = Tensor::empty({1001}, DType::F32, device());
  fill_normal(ctx(), whole, 9, 0, 0.0f, 0.01f);
  for (int64_t first : {0, 1, 512, 777}) {
    Tensor part = Tensor::empty({1001 - first}, DType::F32, device());
    fill_normal(ctx(), part, 9, 0, 0.0f, 0.01f, uint64_t(first));
    ctx().synchronize();
    const Tensor expected = whole.to(Device::CPU), got = part.to(Device::CPU);
    for (int64_t i = 0; i < part.numel(); ++i)
      ASSERT_NEAR(got.data<float>()[i], expected.data<float>()[first + i], tolerance) << "first " << first << " i " << i;
  }
}

TEST_P(RandomFill, RejectsOtherDTypes) {
  Tensor y = Tensor::empty({4}, DType::BF16, device());
  EXPECT_THROW(fill_uniform(ctx(), y, 1, 0), Error);
  EXPECT_THROW(fill_normal(ctx(), y, 1, 0), Error);
}

CUFACE_ON_EVERY_BACKEND(RandomFill);

}  // namespace
}  // namespace cuface
