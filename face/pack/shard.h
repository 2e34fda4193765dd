// Reads one shard through a read-only memory map. Opening checks the header, the file size and the
// index (each with its CRC), so a truncated or foreign file is rejected at once with its name;
// record(i) checks one record's framing in O(1) and never reads outside the file, whatever the
// bytes say; check(i) also recomputes the record's CRC.
#pragma once
#include <string>

#include "face/pack/format.h"
#include "face/pack/mapped_file.h"

namespace cuface {

class Shard {
 public:
  explicit Shard(const std::string& path);  // throws cuface::Error naming the file
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  int64_t size() const { return count_; }
  const std::string& path() const { return file_.path(); }
  uint32_t shard_index() const { return shard_index_; }
  uint32_t shard_count() const { return shard_count_; }

  // Throws cuface::Error naming the shard and record when the framing is inconsistent.
  RecordView record(int64_t i) const;
  // Framing and CRC; on failure returns false and sets `error` (no exception).
  bool check(int64_t i, std::string& error) const;
  // "FILE record I" (+ " (SOURCE)" when the record is readable), for messages.
  std::string describe(int64_t i) const;

 private:
  bool frame(int64_t i, const uint8_t*& body, uint32_t& body_bytes, uint32_t& crc, std::string& error) const;
  MappedFile file_;
  const uint8_t* map_;
  size_t file_bytes_;
  int64_t count_ = 0;
  uint64_t index_offset_ = 0;
  uint32_t shard_index_ = 0, shard_count_ = 1;
};

}  // namespace cuface
