// Output files appear whole or not at all: the content goes to a temporary name beside the target and
// is renamed over it only once everything was written, so an interrupted run never leaves a truncated
// report, checkpoint or embedding file that looks valid.
#pragma once
#include <filesystem>
#include <fstream>
#include <string_view>

namespace cuface {

class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path target);  // opens `target.tmp.<pid>` for binary writing
  ~AtomicFile();                                       // removes the temporary unless commit() ran
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  std::ofstream& stream() { return out_; }
  // Flushes, checks that every write succeeded, and renames the temporary to the target.
  void commit();

 private:
  std::filesystem::path target_, temporary_;
  std::ofstream out_;
  bool committed_ = false;
};

// Writes `content` to `path` through an AtomicFile.
void write_file_atomically(const std::filesystem::path& path, std::string_view content);

}  // namespace cuface
