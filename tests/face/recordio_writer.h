// A test-only MXNet RecordIO writer, following dmlc-core's RecordIOWriter::WriteRecord (a record
// whose data holds the magic word at a 4-byte aligned position is split there into parts with
// cflag 1/2/3, the magic word dropped) and mxnet.recordio.pack (IRHeader 'IfQQ' + labels + image).
#pragma once
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "face/pack/recordio.h"

namespace cuface::testing {

inline std::vector<uint8_t> image_record_payload(uint32_t flag, float label, const std::vector<float>& labels,
                                                 uint64_t id, const std::vector<uint8_t>& image) {
  std::vector<uint8_t> payload(24 + labels.size() * 4);
  const uint64_t id2 = 0;
  std::memcpy(payload.data(), &flag, 4);
  std::memcpy(payload.data() + 4, &label, 4);
  std::memcpy(payload.data() + 8, &id, 8);
  std::memcpy(payload.data() + 16, &id2, 8);
  if (!labels.empty()) std::memcpy(payload.data() + 24, labels.data(), labels.size() * 4);
  payload.insert(payload.end(), image.begin(), image.end());
  return payload;
}

class RecordIOWriter {
 public:
  // Appends one record; returns the byte offset where it starts (what .idx stores).
  uint64_t write(const std::vector<uint8_t>& data) {
    const uint64_t start = bytes_.size();
    const uint32_t len = uint32_t(data.size());
    const uint32_t lower_align = len / 4 * 4;
    uint32_t dptr = 0;
    for (uint32_t i = 0; i < lower_align; i += 4) {
      uint32_t word;
      std::memcpy(&word, data.data() + i, 4);
      if (word == kRecordIOMagic) {
        part(dptr == 0 ? 1u : 2u, data.data() + dptr, i - dptr, false);
        dptr = i + 4;
      }
    }
    part(dptr != 0 ? 3u : 0u, data.data() + dptr, len - dptr, true);
    return start;
  }
  void save(const std::string& rec_path, const std::string& idx_path, const std::vector<uint64_t>& offsets,
            const std::vector<int64_t>& keys) const {
    std::ofstream(rec_path, std::ios::binary).write(reinterpret_cast<const char*>(bytes_.data()), std::streamsize(bytes_.size()));
    std::ofstream idx(idx_path);
    for (size_t i = 0; i < keys.size(); ++i) idx << keys[i] << "\t" << offsets[i] << "\n";
  }
  const std::vector<uint8_t>& bytes() const { return bytes_; }

 private:
  void part(uint32_t cflag, const uint8_t* data, uint32_t length, bool pad) {
    const uint32_t header[2] = {kRecordIOMagic, (cflag << 29) | length};
    const auto* h = reinterpret_cast<const uint8_t*>(header);
    bytes_.insert(bytes_.end(), h, h + 8);
    bytes_.insert(bytes_.end(), data, data + length);
    // dmlc pads only after the final part (the split points are aligned, so earlier parts are too).
    if (pad) bytes_.resize((bytes_.size() + 3) / 4 * 4, 0);
  }
  std::vector<uint8_t> bytes_;
};

}  // namespace cuface::testing
