// Writes one shard: records streamed to PATH.tmp, then the index and the final header, then a rename
// to PATH, so a shard that exists under its name is complete.
#pragma once
#include <cstdio>
#include <string>
#include <vector>

#include "face/pack/format.h"

namespace cuface {

class ShardWriter {
 public:
  ShardWriter(std::string path, uint32_t shard_index, uint32_t shard_count);
  ~ShardWriter();  // removes the temporary file unless finish() succeeded
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  void add(const RecordLabels& labels, std::string_view source, Encoding encoding, int width, int height,
           int channels, const uint8_t* data, size_t size);
  void finish();  // throws cuface::Error naming the file on any write failure
  int64_t records() const { return int64_t(offsets_.size()); }
  const std::string& path() const { return path_; }

 private:
  void write(const void* data, size_t size);
  std::string path_, temporary_;
  uint32_t shard_index_, shard_count_;
  FILE* file_ = nullptr;
  uint64_t position_ = 0;
  std::vector<uint64_t> offsets_;
  bool finished_ = false;
};

}  // namespace cuface
