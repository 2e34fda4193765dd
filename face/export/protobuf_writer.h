// The Protocol Buffers wire format, written by hand: just enough to serialise an ONNX model (onnx.h).
//
// A message is a sequence of fields, each a key varint (field number << 3 | wire type) and a value:
//   wire type 0  varint             int32, int64, enums, bools: 7 bits a byte, low bits first,
//                                   high bit set on every byte but the last (negative values take
//                                   ten bytes, as int64's two's complement)
//   wire type 5  32-bit, little-endian  float
//   wire type 2  length-delimited   a varint byte count, then the bytes: strings, bytes, and nested
//                                   messages (serialised first, then written as bytes)
// Fields may come in any order; the values of a repeated field keep theirs. Repeated scalars are
// written one key per value (proto2's unpacked form, which every parser also accepts in proto3).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace cuface::onnx {

class ProtoWriter {
 public:
  void varint_field(int field, int64_t value);
  void float_field(int field, float value);
  void bytes_field(int field, std::string_view bytes);  // strings, raw bytes, serialised messages
  void message_field(int field, const ProtoWriter& message) { bytes_field(field, message.bytes()); }
  // The key and length of a length-delimited field whose `size` bytes the caller writes after these.
  void bytes_field_header(int field, uint64_t size);

  const std::string& bytes() const { return bytes_; }
  size_t size() const { return bytes_.size(); }

 private:
  void varint(uint64_t value);
  void key(int field, int wire_type);
  std::string bytes_;
};

}  // namespace cuface::onnx
