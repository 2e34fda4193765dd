#include "face/eval/insightface_bin.h"

#include <cstdio>
#include <fstream>
#include <unordered_map>

#include "engine/error.h"

namespace cuface::eval {

namespace {

// A decoded pickle value. Byte strings stay where they are in the file: only offset and size are kept.
struct Object {
  enum Kind { Bytes, Text, Bool, Int, None, List, Tuple } kind = None;
  uint64_t offset = 0, size = 0;  // Bytes, Text
  int64_t value = 0;              // Bool, Int
  std::vector<size_t> items;      // List, Tuple: indices into the object pool
};

const char* kind_name(Object::Kind kind) {
  switch (kind) {
    case Object::Bytes: return "bytes";
    case Object::Text: return "str";
    case Object::Bool: return "bool";
    case Object::Int: return "int";
    case Object::None: return "None";
    case Object::List: return "list";
    case Object::Tuple: return "tuple";
  }
  return "?";
}

// The pickle virtual machine, reduced to the opcodes verification sets use (see pickletools).
class Unpickler {
 public:
  Unpickler(const std::vector<uint8_t>& bytes, const std::string& name) : bytes_(bytes), name_(name) {}

  std::vector<Object> pool;  // every object made; the stack and the memo hold indices into it

  size_t run() {
    while (true) {
      const size_t at = pos_;
      const uint8_t op = read_u8();
      switch (op) {
        case 0x80: {  // PROTO
          const uint8_t protocol = read_u8();
          if (protocol < 2 || protocol > 5) fail(at, "pickle protocol " + std::to_string(protocol) + " (expected 2 to 5)");
          break;
        }
        case 0x95: read_le(8); break;  // FRAME: a length hint only
        case '(': marks_.push_back(stack_.size()); break;  // MARK
        case ']': push(make(Object::List)); break;         // EMPTY_LIST
        case ')': push(make(Object::Tuple)); break;        // EMPTY_TUPLE
        case 'l': push(make(Object::List, pop_mark(at))); break;   // LIST
        case 't': push(make(Object::Tuple, pop_mark(at))); break;  // TUPLE
        case 0x85: case 0x86: case 0x87: {  // TUPLE1, TUPLE2, TUPLE3
          const size_t n = size_t(op - 0x84);
          if (stack_.size() < n + marks_floor()) fail(at, "tuple of " + std::to_string(n) + " with too few items");
          std::vector<size_t> items(stack_.end() - long(n), stack_.end());
          stack_.resize(stack_.size() - n);
          push(make(Object::Tuple, std::move(items)));
          break;
        }
        case 'a': {  // APPEND
          const size_t item = pop(at);
          list_on_top(at).items.push_back(item);
          break;
        }
        case 'e': {  // APPENDS
          std::vector<size_t> items = pop_mark(at);
          std::vector<size_t>& list = list_on_top(at).items;
          list.insert(list.end(), items.begin(), items.end());
          break;
        }
        case 'C': push_string(Object::Bytes, read_le(1)); break;  // SHORT_BINBYTES
        case 'B': push_string(Object::Bytes, read_le(4)); break;  // BINBYTES
        case 0x8e: push_string(Object::Bytes, read_le(8)); break; // BINBYTES8
        case 'U': push_string(Object::Bytes, read_le(1)); break;  // SHORT_BINSTRING (Python 2 str)
        case 'T': {                                               // BINSTRING: a signed 4-byte length
          const uint64_t length = read_le(4);
          if (length > 0x7fffffffu) fail(at, "negative string length");
          push_string(Object::Bytes, length);
          break;
        }
        case 0x8c: push_string(Object::Text, read_le(1)); break;  // SHORT_BINUNICODE
        case 'X': push_string(Object::Text, read_le(4)); break;   // BINUNICODE
        case 0x8d: push_string(Object::Text, read_le(8)); break;  // BINUNICODE8
        case 0x88: push(make_value(Object::Bool, 1)); break;      // NEWTRUE
        case 0x89: push(make_value(Object::Bool, 0)); break;      // NEWFALSE
        case 'N': push(make(Object::None)); break;                // NONE
        case 'K': push(make_value(Object::Int, int64_t(read_le(1)))); break;  // BININT1
        case 'M': push(make_value(Object::Int, int64_t(read_le(2)))); break;  // BININT2
        case 'J': push(make_value(Object::Int, int64_t(int32_t(uint32_t(read_le(4)))))); break;  // BININT
        case 'q': memo_put(at, read_le(1)); break;  // BINPUT
        case 'r': memo_put(at, read_le(4)); break;  // LONG_BINPUT
        case 0x94: memo_put(at, memo_.size()); break;  // MEMOIZE
        case 'h': memo_get(at, read_le(1)); break;  // BINGET
        case 'j': memo_get(at, read_le(4)); break;  // LONG_BINGET
        case '.':                                   // STOP
          if (stack_.size() != 1 || !marks_.empty()) fail(at, "STOP with " + std::to_string(stack_.size()) + " objects on the stack");
          return stack_.back();
        case 'c': case 0x93: case 'R': case 'b': case 0x81:
          fail(at, std::string("a Python object that is not a list, tuple, bytes or bool (opcode '") + printable(op) +
                       "': e.g. numpy values; re-save the lists with plain Python types)");
        default: {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", op);
          fail(at, std::string("unsupported pickle opcode ") + hex + " '" + printable(op) + "'");
        }
      }
    }
  }

  [[noreturn]] void fail(size_t at, const std::string& why) const {
    throw Error(name_ + ": not an InsightFace verification .bin (byte " + std::to_string(at) + ": " + why + ")");
  }

 private:
  static std::string printable(uint8_t op) { return op >= 32 && op < 127 ? std::string(1, char(op)) : "?"; }

  uint8_t read_u8() {
    if (pos_ >= bytes_.size()) fail(pos_, "the file ends before the pickle's STOP");
    return bytes_[pos_++];
  }
  uint64_t read_le(int n) {
    if (bytes_.size() - pos_ < size_t(n)) fail(pos_, "the file ends inside an opcode's argument");
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= uint64_t(bytes_[pos_ + size_t(i)]) << (8 * i);
    pos_ += size_t(n);
    return v;
  }

  size_t make(Object::Kind kind, std::vector<size_t> items = {}) {
    Object o;
    o.kind = kind;
    o.items = std::move(items);
    pool.push_back(std::move(o));
    return pool.size() - 1;
  }
  size_t make_value(Object::Kind kind, int64_t value) {
    const size_t i = make(kind);
    pool[i].value = value;
    return i;
  }
  void push_string(Object::Kind kind, uint64_t length) {
    if (length > bytes_.size() - pos_)
      fail(pos_, "a string of " + std::to_string(length) + " bytes runs past the end of the file");
    const size_t i = make(kind);
    pool[i].offset = pos_;
    pool[i].size = length;
    pos_ += size_t(length);
    push(i);
  }

  void push(size_t object) { stack_.push_back(object); }
  // The stack below the innermost mark belongs to an enclosing construct.
  size_t marks_floor() const { return marks_.empty() ? 0 : marks_.back(); }
  size_t pop(size_t at) {
    if (stack_.size() <= marks_floor()) fail(at, "stack underflow");
    const size_t top = stack_.back();
    stack_.pop_back();
    return top;
  }
  std::vector<size_t> pop_mark(size_t at) {
    if (marks_.empty()) fail(at, "no MARK to collect items from");
    const size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<size_t> items(stack_.begin() + long(mark), stack_.end());
    stack_.resize(mark);
    return items;
  }
  Object& list_on_top(size_t at) {
    if (stack_.size() <= marks_floor() || pool[stack_.back()].kind != Object::List)
      fail(at, "append to something that is not a list");
    return pool[stack_.back()];
  }
  void memo_put(size_t at, uint64_t key) {
    if (stack_.size() <= marks_floor()) fail(at, "memo put with an empty stack");
    memo_[key] = stack_.back();
  }
  void memo_get(size_t at, uint64_t key) {
    auto it = memo_.find(key);
    if (it == memo_.end()) fail(at, "memo entry " + std::to_string(key) + " was never stored");
    push(it->second);
  }

  const std::vector<uint8_t>& bytes_;
  const std::string& name_;
  size_t pos_ = 0;
  std::vector<size_t> stack_, marks_;
  std::unordered_map<uint64_t, size_t> memo_;
};

}  // namespace

VerificationBin parse_verification_bin(std::vector<uint8_t> bytes, const std::string& name) {
  VerificationBin bin;
  bin.bytes = std::move(bytes);
  Unpickler unpickler(bin.bytes, name);
  const size_t root = unpickler.run();
  const std::vector<Object>& pool = unpickler.pool;

  auto bad = [&](const std::string& why) -> Error {
    return Error(name + ": not an InsightFace verification .bin (" + why + ")");
  };
  const Object& top = pool[root];
  if ((top.kind != Object::Tuple && top.kind != Object::List) || top.items.size() != 2)
    throw bad(std::string("the pickle holds a ") + kind_name(top.kind) + ", expected the tuple (images, issame)");
  const Object& images = pool[top.items[0]];
  const Object& issame = pool[top.items[1]];
  if (images.kind != Object::List || issame.kind != Object::List)
    throw bad(std::string("expected two lists, found ") + kind_name(images.kind) + " and " + kind_name(issame.kind));

  for (size_t i = 0; i < issame.items.size(); ++i) {
    const Object& flag = pool[issame.items[i]];
    if ((flag.kind != Object::Bool && flag.kind != Object::Int) || flag.value < 0 || flag.value > 1)
      throw bad("is-same entry " + std::to_string(i) + " is a " + kind_name(flag.kind) + ", expected a bool");
    bin.same.push_back(uint8_t(flag.value));
  }
  for (size_t i = 0; i < images.items.size(); ++i) {
    const Object& image = pool[images.items[i]];
    if (image.kind != Object::Bytes)
      throw bad("image " + std::to_string(i) + " is a " + kind_name(image.kind) + ", expected bytes");
    bin.images.push_back({image.offset, image.size});
  }
  if (bin.images.size() != 2 * bin.same.size())
    throw bad(std::to_string(bin.images.size()) + " images for " + std::to_string(bin.same.size()) +
              " pairs (expected two images per pair)");
  return bin;
}

VerificationBin read_verification_bin(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error("cannot open " + file.string());
  std::error_code error;
  const uint64_t size = std::filesystem::file_size(file, error);
  if (error) throw Error("cannot read " + file.string() + ": " + error.message());
  std::vector<uint8_t> bytes(size);
  if (!in.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(size))) throw Error("cannot read " + file.string());
  return parse_verification_bin(std::move(bytes), file.string());
}

}  // namespace cuface::eval
