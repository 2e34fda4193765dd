// `cuface pack --verify`: every record's framing and CRC, its labels (the identity below the pack's
// class count, Pack::record), and every image decoded.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "face/pack/pack.h"

namespace cuface {

struct VerifyResult {
  int64_t records = 0;
  int64_t first_bad = -1;  // lowest bad record index, -1 when all are good
  std::string error;       // "SHARD record I (SOURCE): reason" for first_bad
};

// Checks records in parallel on `jobs` threads (0 = all); `progress(done, total)` after each chunk.
VerifyResult verify_pack(const Pack& pack, int jobs, const std::function<void(int64_t, int64_t)>& progress = {});

// One record: framing, CRC, labels and geometry, and a decode of its image. False with the reason.
bool verify_record(const Pack& pack, int64_t i, std::string& error);

}  // namespace cuface
