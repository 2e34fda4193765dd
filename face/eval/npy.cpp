#include "face/eval/npy.h"

#include <bit>
#include <cstring>
#include <fstream>
#include <sstream>

#include "engine/atomic_file.h"
#include "engine/error.h"

namespace cuface::eval {

namespace fs = std::filesystem;

static_assert(std::endian::native == std::endian::little, "the .npy reader and writer assume a little-endian host");

namespace {

constexpr char kMagic[] = "\x93NUMPY";  // 6 bytes, then major and minor version

[[noreturn]] void bad_npy(const fs::path& file, const std::string& why) {
  throw Error(file.string() + ": not a 2-D float .npy file (" + why + ")");
}

// The value text after `'key':` in the header's Python dict literal.
std::string header_value(const fs::path& file, const std::string& header, const std::string& key) {
  const size_t at = header.find("'" + key + "'");
  if (at == std::string::npos) bad_npy(file, "header has no '" + key + "'");
  const size_t colon = header.find(':', at);
  if (colon == std::string::npos) bad_npy(file, "header is not a dict");
  size_t begin = header.find_first_not_of(' ', colon + 1);
  if (begin == std::string::npos) bad_npy(file, "header ends early");
  size_t end;
  if (header[begin] == '\'') {
    end = header.find('\'', begin + 1);
    if (end == std::string::npos) bad_npy(file, "unterminated string in header");
    return header.substr(begin + 1, end - begin - 1);
  }
  if (header[begin] == '(') {
    end = header.find(')', begin);
    if (end == std::string::npos) bad_npy(file, "unterminated shape in header");
    return header.substr(begin + 1, end - begin - 1);
  }
  end = header.find_first_of(",}", begin);
  if (end == std::string::npos) bad_npy(file, "header ends early");
  return header.substr(begin, end - begin);
}

}  // namespace

void write_npy(const fs::path& file, const Tensor& matrix) {
  CUFACE_CHECK(matrix.rank() == 2 && matrix.dtype() == DType::F32 && !matrix.is_cuda(),
               "write_npy takes a CPU f32 matrix, got " + matrix.str());
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(matrix.size(0)) + ", " +
                       std::to_string(matrix.size(1)) + "), }";
  // magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64, so the data is aligned.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  const uint16_t length = uint16_t(header.size());

  AtomicFile out(file);
  std::ofstream& s = out.stream();
  s.write(kMagic, 6);
  s.put(1).put(0);
  s.write(reinterpret_cast<const char*>(&length), 2);
  s.write(header.data(), std::streamsize(header.size()));
  s.write(static_cast<const char*>(matrix.raw()), std::streamsize(matrix.bytes()));
  out.commit();
}

Tensor read_npy(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error("cannot open " + file.string());
  std::error_code error;
  const uint64_t file_size = fs::file_size(file, error);
  if (error) throw Error("cannot read " + file.string() + ": " + error.message());

  char prefix[8];
  if (!in.read(prefix, 8) || std::memcmp(prefix, kMagic, 6) != 0) bad_npy(file, "no NUMPY magic");
  const int major = uint8_t(prefix[6]);
  if (major < 1 || major > 3) bad_npy(file, "format version " + std::to_string(major) + " is unknown");
  uint32_t header_length = 0;
  const int length_bytes = major == 1 ? 2 : 4;
  if (!in.read(reinterpret_cast<char*>(&header_length), length_bytes)) bad_npy(file, "truncated header");
  const uint64_t data_offset = 8 + uint64_t(length_bytes) + header_length;
  if (data_offset > file_size) bad_npy(file, "truncated header");
  std::string header(header_length, '\0');
  in.read(header.data(), header_length);

  const std::string descr = header_value(file, header, "descr");
  if (descr != "<f4" && descr != "<f8") bad_npy(file, "element type '" + descr + "', expected '<f4' or '<f8'");
  if (header_value(file, header, "fortran_order") != "False") bad_npy(file, "Fortran order is not supported");
  std::vector<int64_t> shape;
  std::istringstream dims(header_value(file, header, "shape"));
  for (std::string dim; std::getline(dims, dim, ',');) {
    if (dim.find_first_not_of(' ') == std::string::npos) continue;
    try {
      shape.push_back(std::stoll(dim));
    } catch (const std::exception&) {
      bad_npy(file, "bad shape entry '" + dim + "'");
    }
  }
  if (shape.size() != 2 || shape[0] < 0 || shape[1] < 0)
    bad_npy(file, "shape has " + std::to_string(shape.size()) + " dimensions, expected 2");

  const size_t item = descr == "<f4" ? 4 : 8;
  uint64_t count = 0, bytes = 0;  // a shape whose size overflows would pass the size check below
  if (__builtin_mul_overflow(uint64_t(shape[0]), uint64_t(shape[1]), &count) ||
      __builtin_mul_overflow(count, item, &bytes))
    bad_npy(file, "shape (" + std::to_string(shape[0]) + ", " + std::to_string(shape[1]) + ") is larger than any file");
  if (file_size - data_offset != count * item)
    bad_npy(file, "expected " + std::to_string(count * item) + " data bytes for shape (" + std::to_string(shape[0]) +
                      ", " + std::to_string(shape[1]) + "), found " + std::to_string(file_size - data_offset));

  Tensor matrix = Tensor::empty({shape[0], shape[1]}, DType::F32);
  if (item == 4) {
    in.read(static_cast<char*>(matrix.raw()), std::streamsize(count * 4));
  } else {
    std::vector<double> values(count);
    in.read(reinterpret_cast<char*>(values.data()), std::streamsize(count * 8));
    float* out = matrix.data<float>();
    for (uint64_t i = 0; i < count; ++i) out[i] = float(values[i]);
  }
  if (!in) bad_npy(file, "read failed");
  return matrix;
}

fs::path embedding_list_path(const fs::path& npy) {
  fs::path list = npy;
  return list.replace_extension(".txt");
}

void write_embeddings(const fs::path& npy, const Embeddings& embeddings) {
  CUFACE_CHECK(embeddings.matrix.rank() == 2 && size_t(embeddings.matrix.size(0)) == embeddings.paths.size(),
               "write_embeddings: one path per matrix row");
  std::string list;
  for (const std::string& path : embeddings.paths) {
    CUFACE_CHECK(path.find('\n') == std::string::npos, "write_embeddings: a path contains a newline");
    list += path + "\n";
  }
  write_npy(npy, embeddings.matrix);
  write_file_atomically(embedding_list_path(npy), list);
}

Embeddings read_embeddings(const fs::path& npy, const fs::path& list) {
  const fs::path list_file = list.empty() ? embedding_list_path(npy) : list;
  Embeddings e;
  e.matrix = read_npy(npy);
  std::ifstream in(list_file);
  if (!in) throw Error("cannot open the image list " + list_file.string() + " (one path per row of " + npy.string() + ")");
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) throw Error(list_file.string() + ":" + std::to_string(number) + ": empty line (expected an image path)");
    e.paths.push_back(line);
  }
  if (int64_t(e.paths.size()) != e.matrix.size(0))
    throw Error(list_file.string() + " lists " + std::to_string(e.paths.size()) + " images but " + npy.string() +
                " has " + std::to_string(e.matrix.size(0)) + " rows");
  return e;
}

}  // namespace cuface::eval
