#include "face/pack/recordio.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include "engine/error.h"

namespace cuface {

bool RecordIOFile::read(uint64_t offset, std::vector<uint8_t>& payload, std::string& error) const {
  const uint8_t* data = file_.data();
  const size_t size = file_.size();
  payload.clear();
  for (bool first = true;; first = false) {
    if (offset > size || size - offset < 8) {
      error = "record header at byte " + std::to_string(offset) + " runs past the end of the file";
      return false;
    }
    uint32_t magic, lrecord;
    std::memcpy(&magic, data + offset, 4);
    std::memcpy(&lrecord, data + offset + 4, 4);
    if (magic != kRecordIOMagic) {
      error = "no RecordIO magic at byte " + std::to_string(offset);
      return false;
    }
    const uint32_t cflag = lrecord >> 29, length = lrecord & ((1u << 29) - 1);
    if (size - offset - 8 < length) {
      error = "record at byte " + std::to_string(offset) + " claims " + std::to_string(length) +
              " bytes past the end of the file";
      return false;
    }
    if (first ? cflag > 1 : cflag < 2) {  // a record starts with part 0 or 1, continues with 2 or 3
      error = "broken multi-part record at byte " + std::to_string(offset);
      return false;
    }
    payload.insert(payload.end(), data + offset + 8, data + offset + 8 + length);
    offset += 8 + (uint64_t(length) + 3) / 4 * 4;
    if (cflag == 0 || cflag == 3) return true;
    const uint8_t* m = reinterpret_cast<const uint8_t*>(&kRecordIOMagic);
    payload.insert(payload.end(), m, m + 4);  // the magic word the writer split the record at
  }
}

bool parse_image_record(const std::vector<uint8_t>& payload, ImageRecord& record, std::string& error) {
  constexpr size_t kHeader = 24;
  if (payload.size() < kHeader) {
    error = "record shorter than its 24-byte IRHeader";
    return false;
  }
  std::memcpy(&record.flag, payload.data(), 4);
  std::memcpy(&record.label, payload.data() + 4, 4);
  std::memcpy(&record.id, payload.data() + 8, 8);
  std::memcpy(&record.id2, payload.data() + 16, 8);
  if (record.flag > (payload.size() - kHeader) / 4) {
    error = "IRHeader announces " + std::to_string(record.flag) + " labels, more than the record holds";
    return false;
  }
  record.labels.resize(record.flag);
  if (record.flag > 0) std::memcpy(record.labels.data(), payload.data() + kHeader, size_t(record.flag) * 4);
  record.image_offset = kHeader + size_t(record.flag) * 4;
  return true;
}

std::vector<std::pair<int64_t, uint64_t>> read_recordio_index(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open RecordIO index " + path);
  std::vector<std::pair<int64_t, uint64_t>> entries;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::istringstream fields(line);
    int64_t key;
    uint64_t offset;
    if (!(fields >> key >> offset)) throw Error(path + ":" + std::to_string(number) + ": expected 'key<TAB>offset'");
    entries.emplace_back(key, offset);
  }
  return entries;
}

}  // namespace cuface
