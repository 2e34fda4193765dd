// The communicator of this test process (MPI under mpiexec, single process otherwise), created once
// by main: MPI cannot be initialised twice. Every rank runs every test, so the collectives match.
#pragma once
#include <cstring>
#include <vector>

#include "common/reference.h"
#include "engine/communicator.h"

namespace cuface::testing {

Communicator& world();

// Rank r's input for a test: reproducible on every rank, so each can compute the reference.
inline Tensor rank_input(const Shape& shape, uint64_t seed, int rank, float lo = -1.0f, float hi = 1.0f) {
  return random_tensor(shape, seed * 1000 + uint64_t(rank), lo, hi);
}

// True when `t` holds the same bytes on every rank.
inline bool same_on_every_rank(Context& ctx, const Tensor& t) {
  Tensor bytes = Tensor::empty({int64_t(t.bytes())}, DType::U8);
  std::memcpy(bytes.raw(), t.raw(), t.bytes());
  Tensor all = Tensor::empty({int64_t(t.bytes()) * world().world_size()}, DType::U8);
  world().all_gather(ctx, bytes, all);
  for (int r = 1; r < world().world_size(); ++r)
    if (std::memcmp(all.data<uint8_t>(), all.data<uint8_t>() + r * t.bytes(), t.bytes()) != 0) return false;
  return true;
}

}  // namespace cuface::testing
