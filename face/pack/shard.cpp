#include "face/pack/shard.h"

#include <cstring>

#include "engine/error.h"
#include "face/pack/crc32.h"

namespace cuface {

namespace {
template <class T>
T get(const uint8_t* p) {
  T value;
  std::memcpy(&value, p, sizeof value);
  return value;
}
}  // namespace

Shard::Shard(const std::string& path)
    : file_(path, /*random_access=*/true), map_(file_.data()), file_bytes_(file_.size()) {
  if (file_bytes_ < kShardHeaderBytes)
    throw Error(path + " is not a cuface shard (only " + std::to_string(file_bytes_) + " bytes)");
  if (std::memcmp(map_, kShardMagic, sizeof kShardMagic) != 0) throw Error(path + " is not a cuface shard (bad magic)");
  const uint32_t version = get<uint32_t>(map_ + 8);
  if (version != kPackVersion)
    throw Error(path + ": pack format version " + std::to_string(version) + ", this cuface reads version " +
                std::to_string(kPackVersion));
  if (get<uint32_t>(map_ + 60) != crc32(map_, 60)) throw Error(path + ": shard header is corrupt (CRC mismatch)");
  count_ = int64_t(get<uint64_t>(map_ + 16));
  index_offset_ = get<uint64_t>(map_ + 24);
  shard_index_ = get<uint32_t>(map_ + 32);
  shard_count_ = get<uint32_t>(map_ + 36);
  if (shard_count_ < 1 || shard_count_ > kMaxShards || shard_index_ >= shard_count_)
    throw Error(path + " is damaged: its header says shard " + std::to_string(shard_index_) + " of " +
                std::to_string(shard_count_));
  const uint64_t expected = index_offset_ + uint64_t(count_) * 8 + 4;
  if (count_ < 0 || index_offset_ < kShardHeaderBytes || index_offset_ % kRecordAlignment != 0 ||
      uint64_t(count_) > file_bytes_ / 8 || expected != file_bytes_)
    throw Error(path + " is truncated or damaged: its header promises " + std::to_string(expected) +
                " bytes, the file has " + std::to_string(file_bytes_));
  const uint8_t* index = map_ + index_offset_;
  if (get<uint32_t>(index + count_ * 8) != crc32(index, size_t(count_) * 8))
    throw Error(path + ": record index is corrupt (CRC mismatch)");
}

bool Shard::frame(int64_t i, const uint8_t*& body, uint32_t& body_bytes, uint32_t& crc, std::string& error) const {
  if (i < 0 || i >= count_) {
    error = "record index out of range";
    return false;
  }
  const uint8_t* index = map_ + index_offset_;
  const uint64_t begin = get<uint64_t>(index + i * 8);
  const uint64_t end = i + 1 < count_ ? get<uint64_t>(index + (i + 1) * 8) : index_offset_;
  if (begin < kShardHeaderBytes || begin > end || end > index_offset_ || end - begin < kRecordPrefixBytes) {
    error = "record offset out of range";
    return false;
  }
  body_bytes = get<uint32_t>(map_ + begin);
  crc = get<uint32_t>(map_ + begin + 4);
  if (body_bytes < kRecordFixedBytes || body_bytes > end - begin - kRecordPrefixBytes) {
    error = "record length " + std::to_string(body_bytes) + " does not fit its slot";
    return false;
  }
  body = map_ + begin + kRecordPrefixBytes;
  return true;
}

RecordView Shard::record(int64_t i) const {
  const uint8_t* body;
  uint32_t body_bytes, crc;
  std::string error;
  if (!frame(i, body, body_bytes, crc, error)) throw Error(path() + " record " + std::to_string(i) + ": " + error);
  RecordView r;
  r.labels.identity = get<int32_t>(body + 0);
  r.labels.gender = get<int8_t>(body + 4);
  const uint8_t encoding = body[5];
  r.labels.age = get<int16_t>(body + 6);
  r.width = get<uint16_t>(body + 8);
  r.height = get<uint16_t>(body + 10);
  r.channels = body[12];
  const uint16_t source_bytes = get<uint16_t>(body + 14);
  if (kRecordFixedBytes + source_bytes > body_bytes)
    throw Error(path() + " record " + std::to_string(i) + ": source path runs past the record");
  r.source = std::string_view(reinterpret_cast<const char*>(body + kRecordFixedBytes), source_bytes);
  r.data = body + kRecordFixedBytes + source_bytes;
  r.size = body_bytes - kRecordFixedBytes - source_bytes;
  if (r.labels.identity < -1 || r.labels.gender < -1 || r.labels.gender > 1 || r.labels.age < -1)
    throw Error(path() + " record " + std::to_string(i) + ": labels out of range (identity " +
                std::to_string(r.labels.identity) + ", gender " + std::to_string(r.labels.gender) + ", age " +
                std::to_string(r.labels.age) + ")");
  if (encoding > uint8_t(Encoding::Png))
    throw Error(path() + " record " + std::to_string(i) + ": unknown encoding " + std::to_string(encoding));
  r.encoding = Encoding(encoding);
  if (r.encoding == Encoding::Raw &&
      (r.channels != 3 || size_t(r.width) * r.height * r.channels != r.size || r.size == 0))
    throw Error(path() + " record " + std::to_string(i) + ": raw pixel data does not match " + std::to_string(r.width) +
                "x" + std::to_string(r.height) + "x" + std::to_string(r.channels));
  return r;
}

bool Shard::check(int64_t i, std::string& error) const {
  const uint8_t* body;
  uint32_t body_bytes, crc;
  if (!frame(i, body, body_bytes, crc, error)) return false;
  const uint32_t actual = crc32(body, body_bytes);
  if (actual != crc) {
    char message[96];
    std::snprintf(message, sizeof message, "CRC mismatch (stored %08x, computed %08x)", crc, actual);
    error = message;
    return false;
  }
  return true;
}

std::string Shard::describe(int64_t i) const {
  std::string text = path() + " record " + std::to_string(i);
  try {
    const RecordView r = record(i);
    text += " (" + std::string(r.source) + ")";
  } catch (const Error&) {
  }
  return text;
}

}  // namespace cuface
