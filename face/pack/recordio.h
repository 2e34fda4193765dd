// MXNet RecordIO, the container InsightFace distributes MS1M-ArcFace, Glint360K and friends in
// (train.rec + train.idx), read directly without MXNet.
//
// Framing (dmlc-core recordio): each part is  uint32 magic 0xced7230a | uint32 lrecord | data |
// zero padding to 4 bytes, with lrecord = cflag << 29 | length. cflag 0 is a whole record; a record
// whose data holds the magic word at a 4-byte aligned position is split there into parts with cflag
// 1 (first), 2 (middle), 3 (last), the magic word itself dropped; the reader puts it back.
// Payload of an image record (mxnet.recordio.pack): IRHeader {uint32 flag; float label; uint64 id;
// uint64 id2} (24 bytes), then `flag` float32 labels when flag > 0, then the encoded image.
// train.idx is text, one "key<TAB>byte offset" line per record.
// InsightFace convention: when record 0's flag > 0, its label[0] is one past the last image key
// (images are keys 1..label[0]-1, the rest describe identity ranges); an image's identity is its
// label, or label[0] when flag > 0.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "face/pack/mapped_file.h"

namespace cuface {

constexpr uint32_t kRecordIOMagic = 0xced7230a;

class RecordIOFile {
 public:
  explicit RecordIOFile(const std::string& path) : file_(path) {}  // throws cuface::Error

  // The reassembled payload of the record whose first part starts at byte `offset`. Returns false
  // with the reason when the framing is broken (bad magic, length past the end of the file, ...).
  bool read(uint64_t offset, std::vector<uint8_t>& payload, std::string& error) const;
  const std::string& path() const { return file_.path(); }

 private:
  MappedFile file_;
};

struct ImageRecord {
  uint32_t flag = 0;
  float label = 0;
  uint64_t id = 0, id2 = 0;
  std::vector<float> labels;   // `flag` extra labels
  size_t image_offset = 0;     // where the encoded image starts in the payload
  float identity() const { return flag > 0 ? labels[0] : label; }
};

// Parses an IRHeader payload; false with the reason when it is too short for its own header.
bool parse_image_record(const std::vector<uint8_t>& payload, ImageRecord& record, std::string& error);

// (key, offset) pairs of a .idx file in file order; throws cuface::Error naming a malformed line.
std::vector<std::pair<int64_t, uint64_t>> read_recordio_index(const std::string& path);

}  // namespace cuface
