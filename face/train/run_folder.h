// The run folder of `cuface train` (its files are listed in face/train/trainer.h) and what keeps its
// records true to the run:
//
//   RunLock     one trainer writes a run folder at a time; a second one is refused, naming the first
//   RunLog      loss_debug.csv and valid.csv: every row up to the last checkpoint survives any kill,
//               and a resumed run drops the rows written after it, so each step is recorded once
//
// A checkpoint records each log's length (RunLog::sync); resuming cuts the log back to that length
// (RunLog::resume) and the resumed run writes the later rows again, exactly as they were (resume is
// bit-exact).
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace cuface {

struct RunFolder {
  std::filesystem::path dir;
  std::filesystem::path model(int64_t step) const { return dir / ("model-" + std::to_string(step) + ".safetensors"); }
  std::filesystem::path state(int64_t step) const { return dir / ("state-" + std::to_string(step) + ".safetensors"); }
  std::filesystem::path state_json(int64_t step) const { return dir / ("state-" + std::to_string(step) + ".json"); }
  std::filesystem::path latest() const { return dir / "latest"; }
  std::filesystem::path best() const { return dir / "best.safetensors"; }
  std::filesystem::path config() const { return dir / "config.json"; }
  std::filesystem::path losses() const { return dir / "loss_debug.csv"; }
  std::filesystem::path validations() const { return dir / "valid.csv"; }
  std::filesystem::path lock() const { return dir / "train.lock"; }

  // The files of a run found in `dir` (config.json, the logs, checkpoints, `latest`), sorted by name.
  std::vector<std::string> run_files() const;
};

// An exclusive lock on a run folder for as long as this object lives. flock(2) makes it exclusive and
// the kernel drops it when the process ends, however it ends; the lock file holds "PID HOST" so that a
// refused trainer can name the one at work, and a file left behind by a killed trainer is taken over
// with a note on stderr.
class RunLock {
 public:
  // Throws cuface::Error naming the process that holds the folder.
  explicit RunLock(const RunFolder& folder);
  ~RunLock();  // removes the lock file, then releases the lock
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  std::filesystem::path file_;
  int fd_ = -1;
};

// A CSV log of a run, appended row by row. Rows are buffered; flush() hands them to the system (what
// `tail -f` sees), sync() also makes them durable and returns the log's length for the checkpoint.
// A write that fails (a full disk) is an error naming the file.
class RunLog {
 public:
  RunLog() = default;
  ~RunLog();
  RunLog(const RunLog&) = delete;
  RunLog& operator=(const RunLog&) = delete;

  // Starts `path` afresh with its header line.
  void create(const std::filesystem::path& path, const std::string& header);
  // Continues `path` from the length a checkpoint recorded (sync()), dropping what was written after
  // it. Negative `length`: a checkpoint from before logs were recorded; the log is continued as it is.
  // A log shorter than its checkpoint (edited or lost since) is continued with a warning.
  void resume(const std::filesystem::path& path, const std::string& header, int64_t length);
  bool is_open() const { return fd_ >= 0; }

  void append(const std::string& row) { pending_ += row; }
  void flush();
  int64_t sync();

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::string pending_;
  int64_t length_ = 0;  // bytes in the file, pending_ not included
};

}  // namespace cuface
