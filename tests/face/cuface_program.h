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

inline Outcome cuface(const ScratchDir& dir, const std::string& args) {
  const std::string command = cuface_binary() + " " + args + " > " + (dir / "stdout").string() + " 2> " +
                              (dir / "stderr").string();
  const int raw = std::system(command.c_str());
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, slurp(dir / "stdout"), slurp(dir / "stderr")};
}

}  // namespace cuface::testing
