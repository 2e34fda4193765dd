#include "engine/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

namespace cuface {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian, as is this host");

namespace {

using nlohmann::json;

constexpr const char* kMetadataKey = "__metadata__";
// The reference implementation refuses headers above 100 MB; a larger one means a corrupt length.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

const char* safetensors_dtype(DType dtype) {
  switch (dtype) {
    case DType::F32: return "F32";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    case DType::U8: return "U8";
    case DType::I32: return "I32";
  }
  return "?";
}

bool parse_safetensors_dtype(const std::string& name, DType* dtype) {
  for (DType d : {DType::F32, DType::BF16, DType::F16, DType::U8, DType::I32}) {
    if (name == safetensors_dtype(d)) {
      *dtype = d;
      return true;
    }
  }
  return false;
}

// Throws the one error a bad file produces: "safetensors file '<path>': <problem>".
[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw Error("safetensors file '" + path + "': " + problem);
}

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
  bool int64 = false;  // stored as I64 (PyTorch's BN num_batches_tracked), read into I32
};

std::string offsets_str(const Entry& e) {
  std::string text = "[";  // built piecewise: GCC 12 warns falsely (-Wrestrict) on "[" + std::to_string(...)
  text += std::to_string(e.begin) + ", " + std::to_string(e.end) + ")";
  return text;
}

Entry parse_entry(const std::string& path, const std::string& name, const json& value) {
  const std::string what = "tensor '" + name + "'";
  if (!value.is_object()) fail(path, what + " is not described by a JSON object");
  for (const char* field : {"dtype", "shape", "data_offsets"})
    if (!value.contains(field)) fail(path, what + " has no \"" + field + "\" field");

  Entry e;
  e.name = name;
  const json& dtype = value["dtype"];
  if (!dtype.is_string()) fail(path, what + ": \"dtype\" is not a string");
  e.int64 = dtype.get<std::string>() == "I64";
  if (e.int64)
    e.dtype = DType::I32;
  else if (!parse_safetensors_dtype(dtype.get<std::string>(), &e.dtype))
    fail(path, what + " has dtype " + dtype.dump() + "; cuface reads F32, BF16, F16, U8, I32 and I64");

  const json& shape = value["shape"];
  if (!shape.is_array()) fail(path, what + ": \"shape\" is not an array");
  if (shape.size() > size_t(Shape::kMaxRank))
    fail(path, what + " has " + std::to_string(shape.size()) +
                   " dimensions; cuface tensors have at most 4 (reshape it before saving)");
  uint64_t bytes = e.int64 ? 8 : dtype_size(e.dtype);
  for (const json& dim : shape) {
    if (!dim.is_number_unsigned())
      fail(path, what + ": shape " + shape.dump() + " has a size that is not a non-negative integer");
    const uint64_t size = dim.get<uint64_t>();
    if (size > uint64_t(INT64_MAX) || __builtin_mul_overflow(bytes, size, &bytes))
      fail(path, what + ": shape " + shape.dump() + " is too large");
    e.shape.dims[e.shape.rank++] = int64_t(size);
  }

  const json& offsets = value["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned())
    fail(path, what + ": \"data_offsets\" is not a pair of non-negative integers");
  e.begin = offsets[0].get<uint64_t>();
  e.end = offsets[1].get<uint64_t>();
  if (e.end < e.begin) fail(path, what + ": data_offsets " + offsets.dump() + " end before they begin");
  if (e.end - e.begin != bytes)
    fail(path, what + ": shape " + shape.dump() + " of " + (e.int64 ? "I64" : safetensors_dtype(e.dtype)) + " needs " +
                   std::to_string(bytes) + " bytes but data_offsets " + offsets.dump() + " hold " +
                   std::to_string(e.end - e.begin));
  return e;
}

// Parses the header; a second entry under an existing top-level name is an error (nlohmann::json
// would silently keep the last one).
json parse_header(const std::string& path, const std::string& text) {
  std::set<std::string> names;
  auto reject_duplicates = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && !names.insert(parsed.get<std::string>()).second)
      fail(path, "the header names '" + parsed.get<std::string>() + "' twice");
    return true;
  };
  try {
    return json::parse(text, reject_duplicates);
  } catch (const json::exception& e) {
    fail(path, std::string("the header is not valid JSON: ") + e.what());
  }
}

}  // namespace

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    CUFACE_CHECK(tensor.defined(), "save_safetensors '" + path + "': tensor '" + name + "' is undefined");
    CUFACE_CHECK(name != kMetadataKey, "save_safetensors '" + path + "': '__metadata__' is reserved");
    CUFACE_CHECK(!header.contains(name), "save_safetensors '" + path + "': tensor name '" + name + "' repeats");
    json shape = json::array();
    for (int i = 0; i < tensor.rank(); ++i) shape.push_back(tensor.size(i));
    header[name] = {{"dtype", safetensors_dtype(tensor.dtype())},
                    {"shape", shape},
                    {"data_offsets", {offset, offset + tensor.bytes()}}};
    offset += tensor.bytes();
  }
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  std::string text = header.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');  // pad so the data section starts 8-byte aligned

  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    CUFACE_CHECK(out, "save_safetensors: cannot open '" + temporary + "' for writing");
    const uint64_t header_bytes = text.size();
    out.write(reinterpret_cast<const char*>(&header_bytes), 8);
    out.write(text.data(), std::streamsize(text.size()));
    for (const auto& [name, tensor] : tensors) {
      const Tensor host = tensor.is_cuda() ? tensor.to(Device::CPU) : tensor;
      out.write(static_cast<const char*>(host.raw()), std::streamsize(host.bytes()));
    }
    out.close();
    if (!out) {
      std::remove(temporary.c_str());
      throw Error("save_safetensors: writing '" + temporary + "' failed (disk full?)");
    }
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) {
    std::remove(temporary.c_str());
    throw Error("save_safetensors: cannot rename '" + temporary + "' to '" + path + "': " + error.message());
  }
}

SafetensorsFile load_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open it for reading");
  std::error_code error;
  const uint64_t file_bytes = std::filesystem::file_size(path, error);
  if (error) fail(path, "cannot read its size: " + error.message());
  if (file_bytes < 8)
    fail(path, "it has " + std::to_string(file_bytes) + " bytes, too few for the 8-byte header length (truncated?)");

  uint64_t header_bytes = 0;
  in.read(reinterpret_cast<char*>(&header_bytes), 8);
  if (header_bytes > file_bytes - 8)
    fail(path, "the header length " + std::to_string(header_bytes) + " runs past the end of the file (" +
                   std::to_string(file_bytes) + " bytes): truncated, or not a safetensors file");
  if (header_bytes > kMaxHeaderBytes)
    fail(path, "the header length " + std::to_string(header_bytes) + " is implausibly large");
  std::string text(header_bytes, '\0');
  in.read(text.data(), std::streamsize(header_bytes));
  if (!in) fail(path, "reading the header failed");

  const json header = parse_header(path, text);
  if (!header.is_object()) fail(path, "the header is not a JSON object");

  SafetensorsFile file;
  std::vector<Entry> entries;
  for (const auto& [name, value] : header.items()) {
    if (name == kMetadataKey) {
      if (!value.is_object()) fail(path, "\"__metadata__\" is not a JSON object");
      for (const auto& [key, item] : value.items()) {
        if (!item.is_string()) fail(path, "metadata '" + key + "' is not a string");
        file.metadata[key] = item.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(path, name, value));
  }

  // Sorted by position, the tensors must tile the data section exactly.
  const uint64_t data_bytes = file_bytes - 8 - header_bytes;
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  uint64_t covered = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    if (e.end > data_bytes)
      fail(path, "tensor '" + e.name + "' at " + offsets_str(e) + " lies beyond the data section (" +
                     std::to_string(data_bytes) + " bytes): truncated?");
    if (e.begin < covered)
      fail(path, "tensor '" + e.name + "' at " + offsets_str(e) + " overlaps tensor '" + entries[i - 1].name +
                     "' at " + offsets_str(entries[i - 1]));
    if (e.begin > covered)
      fail(path, "the data section has " + std::to_string(e.begin - covered) + " unused bytes before tensor '" +
                     e.name + "'");
    covered = e.end;
  }
  if (covered != data_bytes)
    fail(path, "the data section has " + std::to_string(data_bytes - covered) + " bytes after the last tensor");

  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype, Device::CPU);
    in.seekg(std::streamoff(8 + header_bytes + e.begin));
    if (e.int64) {
      std::vector<int64_t> values(size_t(t.numel()));
      in.read(reinterpret_cast<char*>(values.data()), std::streamsize(values.size() * 8));
      for (size_t i = 0; i < values.size(); ++i) {
        if (values[i] < INT32_MIN || values[i] > INT32_MAX)
          fail(path, "I64 tensor '" + e.name + "' holds " + std::to_string(values[i]) + ", beyond 32 bits");
        t.data<int32_t>()[i] = int32_t(values[i]);
      }
    } else {
      in.read(static_cast<char*>(t.raw()), std::streamsize(t.bytes()));
    }
    if (!in) fail(path, "reading tensor '" + e.name + "' failed");
    file.tensors.emplace(e.name, std::move(t));
  }
  return file;
}

}  // namespace cuface
