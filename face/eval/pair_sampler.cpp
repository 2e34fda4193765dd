#include "face/eval/pair_sampler.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "engine/error.h"
#include "engine/philox.h"

namespace cuface::eval {

namespace {

// Uniform in [0, n) for counts beyond 32 bits (pair counts grow with the square of a person's images):
// rejects the top partial block of 2^64 so no value is favoured.
uint64_t below(Philox& rng, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do x = rng.next_u64();
  while (x >= limit);
  return x % n;
}

}  // namespace

std::vector<int> identity_numbers(std::span<const std::string> labels) {
  std::unordered_map<std::string, int> number;
  std::vector<int> out;
  for (const std::string& label : labels) out.push_back(number.emplace(label, int(number.size())).first->second);
  return out;
}

SampledPairs sample_pairs(std::span<const int> identity, int64_t count, uint64_t seed, uint64_t subsequence) {
  CUFACE_CHECK(count >= 2, "sample_pairs: at least 2 pairs");
  std::unordered_map<int, std::vector<int64_t>> rows_of;
  for (size_t i = 0; i < identity.size(); ++i) rows_of[identity[i]].push_back(int64_t(i));
  // Groups in identity order so the draw does not depend on hash-map iteration order.
  std::vector<const std::vector<int64_t>*> groups;
  std::vector<int> ids;
  for (const auto& [id, rows] : rows_of)
    if (rows.size() >= 2) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  std::vector<uint64_t> cumulative;  // same pairs in groups[0..g]
  uint64_t same_total = 0;
  for (int id : ids) {
    groups.push_back(&rows_of[id]);
    const uint64_t n = groups.back()->size();
    same_total += n * (n - 1) / 2;
    cumulative.push_back(same_total);
  }
  const uint64_t n = identity.size();
  const uint64_t different_total = n * (n - 1) / 2 - same_total;
  const uint64_t want_same = uint64_t(count) / 2, want_different = uint64_t(count) - want_same;
  // Rejection of repeats stays cheap while at most half of the available pairs are wanted.
  if (want_same * 2 > same_total)
    throw Error("cannot sample " + std::to_string(want_same) + " distinct same-person pairs: the " +
                std::to_string(identity.size()) + " images offer " + std::to_string(same_total) +
                " (at most half of them can be sampled)");
  if (want_different * 2 > different_total)
    throw Error("cannot sample " + std::to_string(want_different) + " distinct different-person pairs: the images offer " +
                std::to_string(different_total) + " (at most half of them can be sampled)");

  Philox rng(seed, subsequence);
  SampledPairs out;
  std::unordered_set<uint64_t> taken;
  auto take = [&](int64_t a, int64_t b, bool same) {
    if (a > b) std::swap(a, b);
    if (!taken.insert(uint64_t(a) * n + uint64_t(b)).second) return;
    out.rows.push_back({a, b});
    out.same.push_back(same ? 1 : 0);
  };
  while (out.rows.size() < want_same) {
    // A group with probability proportional to its pair count, then two distinct members.
    const uint64_t r = below(rng, same_total);
    const size_t g = size_t(std::upper_bound(cumulative.begin(), cumulative.end(), r) - cumulative.begin());
    const std::vector<int64_t>& members = *groups[g];
    const uint64_t i = below(rng, members.size());
    uint64_t j = below(rng, members.size() - 1);
    if (j >= i) ++j;
    take(members[i], members[j], true);
  }
  while (out.rows.size() < uint64_t(count)) {
    const uint64_t a = below(rng, n), b = below(rng, n);
    if (identity[a] != identity[b]) take(int64_t(a), int64_t(b), false);
  }
  // Mixed order (Fisher-Yates), so contiguous k-fold splits see both kinds.
  for (size_t i = out.rows.size() - 1; i > 0; --i) {
    const size_t j = size_t(below(rng, i + 1));
    std::swap(out.rows[i], out.rows[j]);
    std::swap(out.same[i], out.same[j]);
  }
  return out;
}

}  // namespace cuface::eval
