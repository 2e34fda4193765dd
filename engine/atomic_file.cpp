#include "engine/atomic_file.h"

#include <unistd.h>

#include <system_error>

#include "engine/error.h"

namespace cuface {

AtomicFile::AtomicFile(std::filesystem::path target) : target_(std::move(target)) {
  temporary_ = target_;
  temporary_ += ".tmp." + std::to_string(::getpid());
  out_.open(temporary_, std::ios::binary | std::ios::trunc);
  if (!out_) throw Error("cannot write " + target_.string() + " (could not create " + temporary_.string() + ")");
}

AtomicFile::~AtomicFile() {
  if (committed_) return;
  out_.close();
  std::error_code ignored;
  std::filesystem::remove(temporary_, ignored);
}

void AtomicFile::commit() {
  out_.flush();
  const bool written = bool(out_);
  out_.close();
  if (!written || out_.fail()) throw Error("cannot write " + target_.string() + " (write failed; disk full?)");
  std::error_code error;
  std::filesystem::rename(temporary_, target_, error);
  if (error) throw Error("cannot write " + target_.string() + ": " + error.message());
  committed_ = true;
}

void write_file_atomically(const std::filesystem::path& path, std::string_view content) {
  AtomicFile file(path);
  file.stream().write(content.data(), std::streamsize(content.size()));
  file.commit();
}

}  // namespace cuface
