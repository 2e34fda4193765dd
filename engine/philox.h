// Philox4x32-10: the counter-based random number generator of Salmon, Moraes, Dror and Shaw,
// "Parallel Random Numbers: As Easy as 1, 2, 3" (SC11), as in Random123 and cuRAND.
//
// A counter-based generator is a pure function: 128 bits of counter and 64 bits of key go in, 128
// random bits come out. Any position of any stream can be computed directly, so a GPU thread, a
// loader worker or a resumed run can draw exactly the numbers it would have drawn otherwise, without
// sharing state. All randomness in cuface comes from here.
//
// Stream layout (the same as cuRAND's curand_init(seed, subsequence, offset) for Philox4_32_10):
//   key     = seed                    (key0 = low 32 bits, key1 = high 32 bits)
//   counter = {block, subsequence}    (counter[0..1] = 64-bit block index, low word first;
//                                      counter[2..3] = 64-bit subsequence, low word first)
//   The stream (seed, subsequence) is the u32 sequence
//     philox(block 0)[0..3], philox(block 1)[0..3], ...
//   and `offset` counts u32 values into it: number `offset` is word offset % 4 of block offset / 4.
// So thread i of a kernel that builds Philox(seed, i, offset) sees exactly the numbers host code
// sees with the same three arguments; subsequences never overlap (2^64 blocks each).
//
// Header-only so CUDA kernels can use it; compiles as C++17 under nvcc.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "engine/dtype.h"

namespace cuface {

struct PhiloxOutput {
  uint32_t v[4];
};

namespace philox_detail {
constexpr uint32_t kMultiplier0 = 0xD2511F53u;
constexpr uint32_t kMultiplier1 = 0xCD9E8D57u;
constexpr uint32_t kKeyBump0 = 0x9E3779B9u;  // golden ratio
constexpr uint32_t kKeyBump1 = 0xBB67AE85u;  // sqrt(3) - 1

CUFACE_HOST_DEVICE inline uint32_t mulhi(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return uint32_t((uint64_t(a) * b) >> 32);
#endif
}
}  // namespace philox_detail

// Ten rounds of: two 32x32->64 multiplications whose high halves are xored with the other words and
// the round key (a Feistel-like S-box), then the words are permuted; the key is bumped by Weyl
// constants between rounds.
CUFACE_HOST_DEVICE inline PhiloxOutput philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                                     uint32_t key0, uint32_t key1) {
  using namespace philox_detail;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key0 += kKeyBump0;
      key1 += kKeyBump1;
    }
    const uint32_t hi0 = mulhi(kMultiplier0, c0), lo0 = kMultiplier0 * c0;
    const uint32_t hi1 = mulhi(kMultiplier1, c2), lo1 = kMultiplier1 * c2;
    const uint32_t n0 = hi1 ^ c1 ^ key0;
    const uint32_t n2 = hi0 ^ c3 ^ key1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
  return PhiloxOutput{{c0, c1, c2, c3}};
}

CUFACE_HOST_DEVICE inline PhiloxOutput philox4x32_10(const uint32_t counter[4], uint32_t key0, uint32_t key1) {
  return philox4x32_10(counter[0], counter[1], counter[2], counter[3], key0, key1);
}

// One block of the stream (seed, subsequence): the four u32 values at offsets 4*block .. 4*block+3.
CUFACE_HOST_DEVICE inline PhiloxOutput philox_block(uint64_t seed, uint64_t subsequence, uint64_t block) {
  return philox4x32_10(uint32_t(block), uint32_t(block >> 32), uint32_t(subsequence), uint32_t(subsequence >> 32),
                       uint32_t(seed), uint32_t(seed >> 32));
}

// The top 24 bits of a u32 as a float in [0, 1): every value is exact, 1 is never reached.
CUFACE_HOST_DEVICE inline float u32_to_unit_float(uint32_t x) { return float(x >> 8) * (1.0f / 16777216.0f); }

// A sequential reader of one stream. Small (40 bytes) and copyable, so it lives in registers on the
// GPU; copies continue independently from the same position.
class Philox {
 public:
  CUFACE_HOST_DEVICE Philox(uint64_t seed, uint64_t subsequence = 0, uint64_t offset = 0)
      : key0_(uint32_t(seed)), key1_(uint32_t(seed >> 32)) {
    const uint64_t block = offset / 4;
    counter_[0] = uint32_t(block);
    counter_[1] = uint32_t(block >> 32);
    counter_[2] = uint32_t(subsequence);
    counter_[3] = uint32_t(subsequence >> 32);
    index_ = uint32_t(offset % 4);
    output_ = philox4x32_10(counter_, key0_, key1_);
  }

  CUFACE_HOST_DEVICE uint32_t next_u32() {
    if (index_ == 4) {
      advance_block();
      index_ = 0;
    }
    return output_.v[index_++];
  }

  // Two consecutive u32 values, the first as the low half.
  CUFACE_HOST_DEVICE uint64_t next_u64() {
    const uint64_t low = next_u32();
    return low | (uint64_t(next_u32()) << 32);
  }

  // Uniform in [0, 1) on the 2^24 grid: one u32 each.
  CUFACE_HOST_DEVICE float next_float() { return u32_to_unit_float(next_u32()); }

  // Standard normal by Box-Muller from two u32 values (the sine half is not kept, so every normal
  // costs exactly two values and positions stay easy to reason about). u1 is in (0, 1] so the log is
  // finite. Host and device math libraries may differ in the last bits of log/cos.
  CUFACE_HOST_DEVICE float next_normal() {
    const float u1 = float((next_u32() >> 8) + 1) * (1.0f / 16777216.0f);
    const float u2 = next_float();
    constexpr float kTwoPi = 6.28318530717958647692f;
#if defined(__CUDA_ARCH__)
    return sqrtf(-2.0f * logf(u1)) * cosf(kTwoPi * u2);
#else
    return std::sqrt(-2.0f * std::log(u1)) * std::cos(kTwoPi * u2);
#endif
  }

  // Unbiased integer in [0, n) for n > 0 (n == 0 gives 0), by Lemire's multiply-and-reject: the high
  // word of x * n is uniform once the few low words that would favour some results are redrawn.
  CUFACE_HOST_DEVICE uint32_t uniform_int(uint32_t n) {
    if (n == 0) return 0;
    uint64_t product = uint64_t(next_u32()) * n;
    if (uint32_t(product) < n) {
      const uint32_t reject_below = (0u - n) % n;  // 2^32 mod n
      while (uint32_t(product) < reject_below) product = uint64_t(next_u32()) * n;
    }
    return uint32_t(product >> 32);
  }

 private:
  // 128-bit increment of the counter; only the block words change unless 2^64 blocks are used.
  CUFACE_HOST_DEVICE void advance_block() {
    for (int i = 0; i < 4; ++i)
      if (++counter_[i] != 0) break;
    output_ = philox4x32_10(counter_, key0_, key1_);
  }

  uint32_t key0_, key1_;
  uint32_t counter_[4];
  PhiloxOutput output_;
  uint32_t index_;  // next word of output_ to hand out; 4 = block used up
};

// A uniformly random permutation of 0 .. n-1 (Fisher-Yates, drawing from Philox(seed, subsequence)).
// The loader uses subsequence = epoch, so each epoch's order is reproducible on its own.
std::vector<int64_t> philox_permutation(int64_t n, uint64_t seed, uint64_t subsequence);

}  // namespace cuface
