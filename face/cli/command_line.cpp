#include <string>

#include "face/cli/commands.h"

namespace cuface::cli {

static std::string& stored_command_line() {
  static std::string line;
  return line;
}

void set_command_line(int argc, char** argv) {
  std::string& line = stored_command_line();
  line.clear();
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool quote = arg.empty() || arg.find_first_of(" \t'\"$") != std::string::npos;
    line += (i ? " " : "") + (quote ? "'" + arg + "'" : arg);
  }
}

const std::string& command_line() { return stored_command_line(); }

}  // namespace cuface::cli
