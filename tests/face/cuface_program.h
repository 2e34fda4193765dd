// Running the `cuface` program itself from a test: its exit status and what it printed, captured
// through files in the test's scratch folder.
#pragma once
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "scratch_dir.h"

namespace cuface::testing {

// The program under test: $CUFACE_BINARY when set (a build carried to another machine, as
// scripts/device_check.sh does), else the one this build made (CUFACE_BINARY, a compile definition).
inline std::string cuface_binary() {
  const char* carried = std::getenv("CUFACE_BINARY");
  return carried && *carried ? carried : CUFACE_BINARY;
}

inline std::string slurp(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct Outcome {
  int status = -1;  // the exit status; -1 when the program did not exit normally (a crash)
  std::string out, err;
};

// Runs a shell command line with its output captured in `dir`.
inline Outcome run_captured(const ScratchDir& dir, const std::string& command_line) {
  const std::string command = command_line + " > " + (dir / "stdout").string() + " 2> " + (dir / "stderr").string();
  const int raw = std::system(command.c_str());
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, slurp(dir / "stdout"), slurp(dir / "stderr")};
}

// The program started in the background with `args` (after the program's name), its stdout and
// stderr in `log`: for tests that signal it while it works. Waited for (killed first, if still
// running) when the object goes, so a failed test leaves no process behind.
class Background {
 public:
  Background(const std::vector<std::string>& args, const std::filesystem::path& log) {
    std::vector<std::string> argv_text{cuface_binary()};
    argv_text.insert(argv_text.end(), args.begin(), args.end());
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (std::string& a : argv_text) argv.push_back(a.data());
      argv.push_back(nullptr);
      if (!freopen(log.c_str(), "w", stdout) || dup2(fileno(stdout), 2) < 0) _exit(126);
      execv(argv[0], argv.data());
      _exit(127);
    }
  }
  ~Background() {
    if (status_ != kRunning) return;
    kill(pid_, SIGKILL);
    wait();
  }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;

  pid_t pid() const { return pid_; }
  bool running() {
    int raw = 0;
    if (status_ == kRunning && waitpid(pid_, &raw, WNOHANG) == pid_) status_ = decode(raw);
    return status_ == kRunning;
  }
  void signal(int number) { kill(pid_, number); }
  // The exit status; -1 when a signal ended it.
  int wait() {
    int raw = 0;
    if (status_ == kRunning && waitpid(pid_, &raw, 0) == pid_) status_ = decode(raw);
    return status_;
  }

 private:
  static constexpr int kRunning = -2;
  static int decode(int raw) { return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1; }
  pid_t pid_ = -1;
  int status_ = kRunning;
};

// Polls `ready` every few milliseconds for up to `seconds`; its last answer.
inline bool wait_until(const std::function<bool()>& ready, double seconds = 60) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!ready()) {
    if (std::chrono::steady_clock::now() > deadline) return ready();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

inline Outcome cuface(const ScratchDir& dir, const std::string& args) {
  return run_captured(dir, cuface_binary() + " " + args);
}

// The address space cuface_bounded allows: a program linked with the CUDA runtime, cuDNN and NCCL
// needs 256-512 MiB of it to start (measured: 256 MiB fails, 512 MiB starts in 0.05 s; cuBLAS, which
// needed 2 GiB, is loaded only with a CUDA Context), while a reader that allocates per
// identity value needs far more (3.2 GB for identity 419,430,400 at 8 bytes).
constexpr int kBoundedMegabytes = 1024;

// The program under limits, for inputs that could make it hang or allocate without bound: killed
// after `seconds` (a status other than 0, 1 or 2), and an allocation past `megabytes` of address
// space fails (the program then reports std::bad_alloc as an unexpected error).
inline Outcome cuface_bounded(const ScratchDir& dir, const std::string& args, int seconds,
                              int megabytes = kBoundedMegabytes) {
  return run_captured(dir, "(ulimit -v " + std::to_string(megabytes * 1024) + " && exec timeout -s KILL " +
                               std::to_string(seconds) + " " + cuface_binary() + " " + args + ")");
}

}  // namespace cuface::testing
