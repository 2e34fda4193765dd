// The emulator's randomness (thread order within a block, order of independent streams) comes from
// CUFACE_EMU_SEED (default 1), so a failure can be replayed and other seeds tried.
#pragma once
#include <cstdint>

namespace cuda_emulator {
uint64_t seed_for(const char* purpose);
}
