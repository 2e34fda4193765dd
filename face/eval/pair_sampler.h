// Random verification pairs from identity-labelled images (the original project's repeated
// sampling on sets too large to pair exhaustively): half same-person pairs, half different-person
// pairs, each drawn uniformly from all such pairs, no pair twice. The draws come from
// Philox(seed, subsequence), so the same arguments give the same pairs on every platform.
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace cuface::eval {

struct SampledPairs {
  std::vector<std::array<int64_t, 2>> rows;  // indices into `identity`
  std::vector<uint8_t> same;
};

// `count` pairs in random order: count / 2 same-person (rounded down), the rest different-person.
// An error when the identities do not offer twice that many distinct pairs of either kind.
SampledPairs sample_pairs(std::span<const int> identity, int64_t count, uint64_t seed, uint64_t subsequence = 0);

// Identity numbers for labels (e.g. the folder of each image), in order of first appearance.
std::vector<int> identity_numbers(std::span<const std::string> labels);

}  // namespace cuface::eval
