#include <cmath>
#include <cstdlib>
#include <regex>
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

void require_finite_numbers(CLI::App& app) {
  // CLI11 reads "nan" and "inf" as numbers, and a NaN passes every CLI::Range check.
  const CLI::Validator finite(
      [](std::string& text) {
        char* end = nullptr;
        const double value = std::strtod(text.c_str(), &end);
        if (end == text.c_str() || std::isfinite(value)) return std::string();  // not a number: CLI11 says so
        return "expected a finite number, got '" + text + "'";
      },
      "");
  for (CLI::App* command : app.get_subcommands([](CLI::App*) { return true; })) {
    for (CLI::Option* option : command->get_options([](CLI::Option*) { return true; }))
      if (option->get_type_name().rfind("FLOAT", 0) == 0) option->check(finite);
    require_finite_numbers(*command);
  }
}

std::string parse_error_message(const CLI::ParseError& error) {
  // CLI11 words a repeated single-value flag as "--size: At Most 1 required but received 2".
  static const std::regex repeated(R"((\S+): At Most 1 required but received (\d+))");
  std::smatch match;
  const std::string text = error.what();
  if (std::regex_match(text, match, repeated))
    return match[1].str() + " is given " + match[2].str() + " times; give it once";
  return text;
}

}  // namespace cuface::cli
