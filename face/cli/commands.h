// The `cuface` program's subcommands. Each add_*_command registers one subcommand (its flags, --help
// text and the function it runs) on the application; face/main.cpp lists them all.
#pragma once
#include <CLI/CLI.hpp>

#include <string>

namespace cuface::cli {

void add_info_command(CLI::App& app);
void add_selfcheck_command(CLI::App& app);
void add_pack_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_demo_command(CLI::App& app);
void add_eval_fr_command(CLI::App& app);
void add_eval_attr_command(CLI::App& app);
void add_embed_command(CLI::App& app);
void add_verify_command(CLI::App& app);
void add_classify_command(CLI::App& app);
void add_export_command(CLI::App& app);
void add_report_command(CLI::App& app);
void add_gallery_command(CLI::App& app);
void add_identify_command(CLI::App& app);
void add_eval_id_command(CLI::App& app);

// The program's command line as typed (recorded in outputs such as a pack's sidecar).
void set_command_line(int argc, char** argv);
const std::string& command_line();

}  // namespace cuface::cli
