#include "engine/philox.h"

#include <numeric>
#include <string>
#include <utility>

#include "engine/error.h"

namespace cuface {

std::vector<int64_t> philox_permutation(int64_t n, uint64_t seed, uint64_t subsequence) {
  CUFACE_CHECK(n >= 0 && n <= int64_t(UINT32_MAX),
               "philox_permutation: size " + std::to_string(n) + " is outside [0, 2^32)");
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t(0));
  Philox rng(seed, subsequence);
  for (int64_t i = n - 1; i > 0; --i) std::swap(order[size_t(i)], order[rng.uniform_int(uint32_t(i + 1))]);
  return order;
}

}  // namespace cuface
