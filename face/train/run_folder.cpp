#include "face/train/run_folder.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "engine/error.h"

namespace cuface {

namespace fs = std::filesystem;

namespace {

std::string system_error(const std::string& what, const fs::path& path) {
  return "cannot " + what + " '" + path.string() + "': " + std::strerror(errno);
}

std::string read_all(int fd) {
  std::string text;
  char buffer[256];
  for (off_t offset = 0;;) {
    const ssize_t n = ::pread(fd, buffer, sizeof buffer, offset);
    if (n <= 0) return text;
    text.append(buffer, size_t(n));
    offset += n;
  }
}

// Writes all of `bytes` at the end of the file or throws naming it.
void write_all(int fd, const std::string& bytes, const fs::path& path) {
  for (size_t done = 0; done < bytes.size();) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Error(system_error("write", path) + " (disk full?)");
    done += size_t(n);
  }
}

// "process 1234 on host-a" from a lock file's "1234 host-a".
std::string holder_of(const std::string& content) {
  std::istringstream in(content);
  long long pid = 0;
  std::string host;
  if (!(in >> pid >> host)) return "another process";
  return "process " + std::to_string(pid) + " on " + host;
}

std::string host_name() {
  char name[256] = "";
  if (::gethostname(name, sizeof name - 1) != 0 || !name[0]) return "unknown-host";
  return name;
}

}  // namespace

std::vector<std::string> RunFolder::run_files() const {
  std::vector<std::string> found;
  if (!fs::is_directory(dir)) return found;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    const bool checkpoint = (name.starts_with("model-") || name.starts_with("state-")) &&
                            (name.ends_with(".safetensors") || name.ends_with(".json"));
    if (checkpoint || name == "config.json" || name == "loss_debug.csv" || name == "valid.csv" || name == "latest" ||
        name == "best.safetensors")
      found.push_back(name);
  }
  std::sort(found.begin(), found.end());
  return found;
}

RunLock::RunLock(const RunFolder& folder) : file_(folder.lock()) {
  for (;;) {
    fd_ = ::open(file_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw Error(system_error("create the lock file", file_));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const std::string holder = holder_of(read_all(fd_));
      ::close(fd_);
      throw Error("run folder '" + folder.dir.string() + "' is in use by " + holder + " (lock file '" +
                  file_.string() + "'): one trainer writes a run at a time; wait for it, stop it, or choose another "
                  "--out");
    }
    // The trainer before us may have removed the file between our open and our flock: our lock is then
    // on a file nobody else sees, so open the name again.
    struct stat held, named;
    if (::fstat(fd_, &held) == 0 && ::stat(file_.c_str(), &named) == 0 && held.st_dev == named.st_dev &&
        held.st_ino == named.st_ino)
      break;
    ::close(fd_);
  }
  const std::string previous = read_all(fd_);
  if (!previous.empty())
    std::fprintf(stderr, "note: '%s' was left by %s, which ended without releasing it; taking the run folder over\n",
                 file_.c_str(), holder_of(previous).c_str());
  const std::string mine = std::to_string(::getpid()) + " " + host_name() + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, mine.data(), mine.size(), 0) != ssize_t(mine.size())) {
    const std::string message = system_error("write the lock file", file_);
    ::close(fd_);
    throw Error(message);
  }
}

RunLock::~RunLock() {
  ::unlink(file_.c_str());  // before the lock goes: a waiting trainer then opens a fresh file
  ::close(fd_);
}

RunLog::~RunLog() {
  if (fd_ < 0) return;
  // Rows after the last checkpoint: written if possible (a run that ends with an error keeps its last
  // rows to read), silently dropped if not (a resume drops them anyway; the error was reported).
  try {
    flush();
  } catch (const Error&) {
  }
  ::close(fd_);
}

void RunLog::create(const fs::path& path, const std::string& header) {
  path_ = path;
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(system_error("create", path));
  length_ = 0;
  pending_ = header + "\n";
}

void RunLog::resume(const fs::path& path, const std::string& header, int64_t length) {
  if (!fs::exists(path)) {
    if (length > 0)
      std::fprintf(stderr, "warning: '%s' is gone; it starts again from the resumed step\n", path.c_str());
    create(path, header);
    return;
  }
  path_ = path;
  fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd_ < 0) throw Error(system_error("open", path));
  const int64_t size = int64_t(fs::file_size(path));
  if (length > size)
    std::fprintf(stderr,
                 "warning: '%s' holds %lld bytes, %lld fewer than at the checkpoint: rows are missing from it\n",
                 path.c_str(), (long long)size, (long long)(length - size));
  if (length >= 0 && length < size && ::ftruncate(fd_, off_t(length)) != 0) throw Error(system_error("truncate", path));
  length_ = length >= 0 ? std::min(length, size) : size;
}

void RunLog::flush() {
  if (pending_.empty()) return;
  write_all(fd_, pending_, path_);
  length_ += int64_t(pending_.size());
  pending_.clear();
}

int64_t RunLog::sync() {
  flush();
  if (::fsync(fd_) != 0) throw Error(system_error("write", path_));
  return length_;
}

}  // namespace cuface
