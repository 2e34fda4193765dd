// cuface: train and evaluate face recognition networks. Each subcommand lives in face/cli/.
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "engine/error.h"
#include "face/cli/commands.h"

// OpenMP threads that finish a parallel loop spin while they wait for the next one. Beside the
// loader's decode threads on a few cores that spinning starves the loader (6x slower training was
// measured on 2 cores), so cuface asks for sleeping waits. libgomp reads the setting when it is
// loaded, before main runs: set it and start the program again, once, unless the user chose.
static void prefer_passive_openmp_waits(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: then carry on with the default policy
}

int main(int argc, char** argv) {
  prefer_passive_openmp_waits(argv);
  CLI::App app{"cuface: a from-scratch face recognition trainer (ResNet-50 + ArcFace, CPU and CUDA)"};
  app.set_version_flag("--version", "cuface " CUFACE_VERSION);
  app.require_subcommand(1);
  app.fallthrough(false);

  cuface::cli::set_command_line(argc, argv);
  cuface::cli::add_info_command(app);
  cuface::cli::add_pack_command(app);
  cuface::cli::add_eval_fr_command(app);
  cuface::cli::add_eval_attr_command(app);
  cuface::cli::add_embed_command(app);
  cuface::cli::add_verify_command(app);
  cuface::cli::add_classify_command(app);
  cuface::cli::add_export_command(app);
  cuface::cli::add_gallery_command(app);
  cuface::cli::add_identify_command(app);
  cuface::cli::add_eval_id_command(app);
  cuface::cli::add_selfcheck_command(app);
  cuface::cli::add_train_command(app);
  cuface::cli::add_demo_command(app);
  cuface::cli::add_report_command(app);

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
