// Running the `cuface` program itself from a test: its exit status and what it printed, captured
// through files in the test's scratch folder.
#pragma once
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

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

inline Outcome cuface(const ScratchDir& dir, const std::string& args) {
  return run_captured(dir, cuface_binary() + " " + args);
}

// The program under limits, for inputs that could make it hang or allocate without bound: killed
// after `seconds` (a status other than 0, 1 or 2), and an allocation past `megabytes` of address
// space fails (the program then reports std::bad_alloc as an unexpected error).
inline Outcome cuface_bounded(const ScratchDir& dir, const std::string& args, int seconds, int megabytes) {
  return run_captured(dir, "(ulimit -v " + std::to_string(megabytes * 1024) + " && exec timeout -s KILL " +
                               std::to_string(seconds) + " " + cuface_binary() + " " + args + ")");
}

}  // namespace cuface::testing
