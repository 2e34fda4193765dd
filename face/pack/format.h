// The pack format's constants and the view of one record. docs/pack-format.md documents every
// byte; this header and that page change together (and kPackVersion with them).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "face/image/image.h"

namespace cuface {

constexpr char kShardMagic[8] = {'C', 'U', 'F', 'A', 'C', 'E', 'P', 'K'};
constexpr uint32_t kPackVersion = 1;
constexpr size_t kShardHeaderBytes = 64;
constexpr size_t kRecordPrefixBytes = 8;  // body length, CRC-32 of the body
constexpr size_t kRecordFixedBytes = 16;  // labels, encoding, geometry, path length
constexpr size_t kRecordAlignment = 8;    // records and the index start at multiples of 8
constexpr const char* kShardExtension = ".cfpk";
constexpr uint32_t kMaxShards = 99999;    // shard files are numbered with five digits

// -1 means unknown for every label. Gender: 0 male, 1 female. Age: years (UTKFace) or the age class
// of a folder tree, as given. Identity: dense 0..classes-1 within one pack.
struct RecordLabels {
  int32_t identity = -1;
  int8_t gender = -1;
  int16_t age = -1;
};

// One record, pointing into the memory-mapped shard (valid while the shard is open).
struct RecordView {
  RecordLabels labels;
  Encoding encoding = Encoding::Raw;
  int width = 0;  // pixels; for raw records the data is height * width * channels bytes, HWC
  int height = 0;
  int channels = 0;
  std::string_view source;  // the image's path relative to the packed input (or "train.rec:INDEX")
  const uint8_t* data = nullptr;
  size_t size = 0;
};

}  // namespace cuface
