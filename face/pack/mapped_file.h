// A whole file mapped read-only into memory (shards, RecordIO files, legacy .bin files): random
// access without reads into buffers, and pages the kernel can drop and reload at will.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace cuface {

class MappedFile {
 public:
  // Throws cuface::Error naming the file when it cannot be opened or mapped. `random_access`
  // tells the kernel not to read ahead (the loader's shuffled reads).
  explicit MappedFile(const std::string& path, bool random_access = false);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace cuface
