// PLACEHOLDER for engine/philox.h (being written on branch `enginex`): the same interface, so the
// loader switches to the engine's Philox by changing one include. Philox4x32-10 (Salmon et al. 2011):
// a counter-based generator; (seed, subsequence, offset) names a stream position directly, so any
// sample's random numbers are computed without generating the ones before it.
#pragma once
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

namespace cuface {

class Philox {
 public:
  explicit Philox(uint64_t seed, uint64_t subsequence = 0, uint64_t offset = 0)
      : key_{uint32_t(seed), uint32_t(seed >> 32)}, subsequence_(subsequence), block_(offset / 4), lane_(offset % 4) {
    refill();
  }

  uint32_t next_u32() {
    if (lane_ == 4) {
      ++block_;
      lane_ = 0;
      refill();
    }
    return out_[lane_++];
  }
  // Uniform in [0, 1) with 24 random bits.
  float next_float() { return float(next_u32() >> 8) * (1.0f / 16777216.0f); }
  // Uniform in [0, n) (Lemire's multiply-shift; bias below 2^-32 * n).
  uint32_t uniform_int(uint32_t n) { return uint32_t((uint64_t(next_u32()) * n) >> 32); }

 private:
  void refill() {
    uint32_t c[4] = {uint32_t(block_), uint32_t(block_ >> 32), uint32_t(subsequence_), uint32_t(subsequence_ >> 32)};
    uint32_t k[2] = {key_[0], key_[1]};
    for (int round = 0; round < 10; ++round) {
      const uint64_t p0 = uint64_t(0xD2511F53u) * c[0], p1 = uint64_t(0xCD9E8D57u) * c[2];
      const uint32_t n0 = uint32_t(p1 >> 32) ^ c[1] ^ k[0], n2 = uint32_t(p0 >> 32) ^ c[3] ^ k[1];
      c[0] = n0;
      c[1] = uint32_t(p1);
      c[2] = n2;
      c[3] = uint32_t(p0);
      k[0] += 0x9E3779B9u;
      k[1] += 0xBB67AE85u;
    }
    for (int i = 0; i < 4; ++i) out_[i] = c[i];
  }

  uint32_t key_[2];
  uint64_t subsequence_, block_;
  int lane_;
  uint32_t out_[4] = {};
};

// A uniformly random permutation of 0..n-1 (Fisher-Yates), the same for the same (seed, subsequence).
inline std::vector<int64_t> philox_permutation(int64_t n, uint64_t seed, uint64_t subsequence) {
  std::vector<int64_t> order(size_t(n > 0 ? n : 0));
  std::iota(order.begin(), order.end(), int64_t(0));
  Philox rng(seed, subsequence);
  for (int64_t i = n - 1; i > 0; --i) {
    const uint64_t r = (uint64_t(rng.next_u32()) << 32) | rng.next_u32();
    std::swap(order[size_t(i)], order[size_t(r % uint64_t(i + 1))]);
  }
  return order;
}

}  // namespace cuface
