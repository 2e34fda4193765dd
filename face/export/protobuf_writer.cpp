#include "face/export/protobuf_writer.h"

#include <cstring>

namespace cuface::onnx {

namespace {
constexpr int kVarint = 0, kLengthDelimited = 2, kFixed32 = 5;
}

void ProtoWriter::varint(uint64_t value) {
  while (value >= 0x80) {
    bytes_.push_back(char(uint8_t(value) | 0x80));
    value >>= 7;
  }
  bytes_.push_back(char(value));
}

void ProtoWriter::key(int field, int wire_type) { varint((uint64_t(field) << 3) | uint64_t(wire_type)); }

void ProtoWriter::varint_field(int field, int64_t value) {
  key(field, kVarint);
  varint(uint64_t(value));
}

void ProtoWriter::float_field(int field, float value) {
  key(field, kFixed32);
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  for (int shift = 0; shift < 32; shift += 8) bytes_.push_back(char(uint8_t(bits >> shift)));
}

void ProtoWriter::bytes_field_header(int field, uint64_t size) {
  key(field, kLengthDelimited);
  varint(size);
}

void ProtoWriter::bytes_field(int field, std::string_view bytes) {
  bytes_field_header(field, bytes.size());
  bytes_.append(bytes);
}

}  // namespace cuface::onnx
