// face/eval/pair_sampler: the right mix, no repeats, reproducible, and uniform over the pairs.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "engine/error.h"
#include "face/eval/pair_sampler.h"

namespace cuface::eval {
namespace {

TEST(PairSampler, MixLabelsAndNoRepeats) {
  std::vector<int> identity;
  for (int person = 0; person < 30; ++person)
    for (int k = 0; k < 1 + person % 5; ++k) identity.push_back(person * 7);  // sizes 1..5, sparse ids
  const SampledPairs s = sample_pairs(identity, 101, 9);
  ASSERT_EQ(s.rows.size(), 101u);
  int same = 0;
  std::set<std::pair<int64_t, int64_t>> seen;
  for (size_t i = 0; i < s.rows.size(); ++i) {
    const auto [a, b] = s.rows[i];
    EXPECT_LT(a, b);
    EXPECT_EQ(s.same[i], identity[size_t(a)] == identity[size_t(b)] ? 1 : 0);
    EXPECT_TRUE(seen.insert({a, b}).second) << "pair drawn twice";
    same += s.same[i];
  }
  EXPECT_EQ(same, 50);
  // Mixed order: the first half is not all one kind.
  int same_in_first_half = 0;
  for (size_t i = 0; i < 50; ++i) same_in_first_half += s.same[i];
  EXPECT_GT(same_in_first_half, 10);
  EXPECT_LT(same_in_first_half, 40);
}

TEST(PairSampler, SeedDecides) {
  const std::vector<int> identity{0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 3};
  const SampledPairs a = sample_pairs(identity, 8, 5), b = sample_pairs(identity, 8, 5), c = sample_pairs(identity, 8, 6),
                     d = sample_pairs(identity, 8, 5, 1);
  EXPECT_EQ(a.rows, b.rows);
  EXPECT_EQ(a.same, b.same);
  EXPECT_NE(a.rows, c.rows);
  EXPECT_NE(a.rows, d.rows);  // another subsequence of the same seed
}

TEST(PairSampler, EverySamePairEquallyLikely) {
  // Groups of 2, 3 and 5 images: 1 + 3 + 10 = 14 same pairs; drawing 7 of them takes each with
  // probability 1/2 whatever its group, if the draw is uniform.
  const std::vector<int> identity{0, 0, 1, 1, 1, 2, 2, 2, 2, 2};
  std::map<std::pair<int64_t, int64_t>, int> taken;
  const int runs = 2000;
  for (int seed = 0; seed < runs; ++seed) {
    const SampledPairs s = sample_pairs(identity, 14, uint64_t(seed));
    for (size_t i = 0; i < s.rows.size(); ++i)
      if (s.same[i]) ++taken[{s.rows[i][0], s.rows[i][1]}];
  }
  ASSERT_EQ(taken.size(), 14u);
  for (const auto& [pair, count] : taken)  // standard deviation of the fraction: 0.011
    EXPECT_NEAR(double(count) / runs, 0.5, 0.05) << pair.first << "," << pair.second;
}

TEST(PairSampler, TooManyPairsIsAnError) {
  const std::vector<int> identity{0, 0, 1, 1, 2};
  EXPECT_THROW(sample_pairs(identity, 6, 1), Error);  // 3 same pairs wanted, 2 exist
  const std::vector<int> alone{0, 1, 2};
  EXPECT_THROW(sample_pairs(alone, 4, 1), Error);  // no same pairs at all
}

TEST(PairSampler, IdentityNumbers) {
  const std::vector<std::string> labels{"b", "a", "b", "c", "a"};
  EXPECT_EQ(identity_numbers(labels), (std::vector<int>{0, 1, 0, 2, 1}));
}

}  // namespace
}  // namespace cuface::eval
