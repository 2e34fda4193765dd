// cuface: train and evaluate face recognition networks. Each subcommand lives in face/cli/.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "engine/error.h"
#include "face/cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"cuface: a from-scratch face recognition trainer (ResNet-50 + ArcFace, CPU and CUDA)"};
  app.set_version_flag("--version", "cuface " CUFACE_VERSION);
  app.require_subcommand(1);
  app.fallthrough(false);

  cuface::cli::set_command_line(argc, argv);
  cuface::cli::add_info_command(app);
  cuface::cli::add_pack_command(app);
  cuface::cli::add_eval_fr_command(app);
  cuface::cli::add_eval_attr_command(app);
  cuface::cli::add_selfcheck_command(app);

  // CLI11 reports an unknown subcommand as a missing one; name it instead.
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; }))
      known = known || sub->get_name() == argv[1];
    if (!known) {
      std::fprintf(stderr, "cuface: unknown subcommand '%s'\nRun 'cuface --help' for usage.\n", argv[1]);
      return 2;
    }
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // Unknown subcommands and bad flags: one clear message and exit status 2.
    std::fprintf(stderr, "cuface: %s\nRun 'cuface --help' for usage.\n", e.what());
    return 2;
  } catch (const cuface::Error& e) {
    std::fprintf(stderr, "cuface: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuface: unexpected error: %s\n", e.what());
    return 1;
  }
  return 0;
}
