#include "face/pack/shard_writer.h"

#include <cerrno>
#include <cstring>
#include <limits>

#include <unistd.h>

#include "engine/error.h"
#include "face/pack/crc32.h"

namespace cuface {

namespace {
template <class T>
void put(uint8_t* p, T value) {
  std::memcpy(p, &value, sizeof value);  // little-endian hosts only (x86-64, aarch64)
}
}  // namespace

ShardWriter::ShardWriter(std::string path, uint32_t shard_index, uint32_t shard_count)
    : path_(std::move(path)), temporary_(path_ + ".tmp"), shard_index_(shard_index), shard_count_(shard_count) {
  file_ = std::fopen(temporary_.c_str(), "wb");
  if (!file_) throw Error("cannot create " + temporary_ + ": " + std::strerror(errno));
  std::setvbuf(file_, nullptr, _IOFBF, 1 << 20);
  const uint8_t zeros[kShardHeaderBytes] = {};
  write(zeros, sizeof zeros);  // the real header is written by finish()
}

ShardWriter::~ShardWriter() {
  if (file_) std::fclose(file_);
  if (!finished_) std::remove(temporary_.c_str());
}

void ShardWriter::write(const void* data, size_t size) {
  if (size && std::fwrite(data, 1, size, file_) != size)
    throw Error("cannot write " + temporary_ + ": " + std::strerror(errno));
  position_ += size;
}

void ShardWriter::add(const RecordLabels& labels, std::string_view source, Encoding encoding, int width, int height,
                      int channels, const uint8_t* data, size_t size) {
  CUFACE_CHECK(!finished_, "ShardWriter::add after finish");
  CUFACE_CHECK(source.size() <= std::numeric_limits<uint16_t>::max(), "source path longer than 65535 bytes");
  CUFACE_CHECK(width > 0 && width <= 65535 && height > 0 && height <= 65535 && channels > 0 && channels < 256,
               "record geometry out of range");
  const size_t body = kRecordFixedBytes + source.size() + size;
  CUFACE_CHECK(body <= std::numeric_limits<uint32_t>::max(), "record larger than 4 GiB");

  uint8_t fixed[kRecordFixedBytes];
  put<int32_t>(fixed + 0, labels.identity);
  put<int8_t>(fixed + 4, labels.gender);
  put<uint8_t>(fixed + 5, uint8_t(encoding));
  put<int16_t>(fixed + 6, labels.age);
  put<uint16_t>(fixed + 8, uint16_t(width));
  put<uint16_t>(fixed + 10, uint16_t(height));
  put<uint8_t>(fixed + 12, uint8_t(channels));
  put<uint8_t>(fixed + 13, 0);
  put<uint16_t>(fixed + 14, uint16_t(source.size()));

  uint32_t crc = crc32(fixed, sizeof fixed);
  crc = crc32(source.data(), source.size(), crc);
  crc = crc32(data, size, crc);

  uint8_t prefix[kRecordPrefixBytes];
  put<uint32_t>(prefix, uint32_t(body));
  put<uint32_t>(prefix + 4, crc);

  offsets_.push_back(position_);
  write(prefix, sizeof prefix);
  write(fixed, sizeof fixed);
  write(source.data(), source.size());
  write(data, size);
  const uint8_t padding[kRecordAlignment] = {};
  write(padding, (kRecordAlignment - position_ % kRecordAlignment) % kRecordAlignment);
}

void ShardWriter::finish() {
  CUFACE_CHECK(!finished_, "ShardWriter::finish called twice");
  const uint64_t index_offset = position_;
  write(offsets_.data(), offsets_.size() * sizeof(uint64_t));
  const uint32_t index_crc = crc32(offsets_.data(), offsets_.size() * sizeof(uint64_t));
  write(&index_crc, sizeof index_crc);

  uint8_t header[kShardHeaderBytes] = {};
  std::memcpy(header, kShardMagic, sizeof kShardMagic);
  put<uint32_t>(header + 8, kPackVersion);
  put<uint32_t>(header + 12, uint32_t(kShardHeaderBytes));
  put<uint64_t>(header + 16, uint64_t(offsets_.size()));
  put<uint64_t>(header + 24, index_offset);
  put<uint32_t>(header + 32, shard_index_);
  put<uint32_t>(header + 36, shard_count_);
  put<uint32_t>(header + 60, crc32(header, 60));
  if (std::fseek(file_, 0, SEEK_SET) != 0) throw Error("cannot seek in " + temporary_ + ": " + std::strerror(errno));
  if (std::fwrite(header, 1, sizeof header, file_) != sizeof header || std::fflush(file_) != 0 ||
      ::fsync(fileno(file_)) != 0)
    throw Error("cannot write " + temporary_ + ": " + std::strerror(errno));
  const int closed = std::fclose(file_);
  file_ = nullptr;
  if (closed != 0) throw Error("cannot close " + temporary_ + ": " + std::strerror(errno));
  if (std::rename(temporary_.c_str(), path_.c_str()) != 0)
    throw Error("cannot rename " + temporary_ + " to " + path_ + ": " + std::strerror(errno));
  finished_ = true;
}

}  // namespace cuface
