// The `cuface` program's subcommands. Each add_*_command registers one subcommand (its flags, --help
// text and the function it runs) on the application; face/main.cpp lists them all.
#pragma once
#include <CLI/CLI.hpp>

namespace cuface::cli {

void add_info_command(CLI::App& app);
void add_eval_fr_command(CLI::App& app);
void add_eval_attr_command(CLI::App& app);

}  // namespace cuface::cli
