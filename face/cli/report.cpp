// `cuface report`: one self-contained HTML page of a run (face/report/html_report.h), written
// atomically to RUN/report.html or --out.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>

#include "engine/atomic_file.h"
#include "face/cli/commands.h"
#include "face/cli/inference.h"
#include "face/report/html_report.h"

namespace cuface::cli {

namespace fs = std::filesystem;

namespace {

struct ReportArgs {
  fs::path run, out;
  std::vector<fs::path> evaluations;
  report::ReportOptions options;
};

void run_report(const ReportArgs& args) {
  check_output_folder("--out", args.out);
  const report::RunRecord run = report::read_run(args.run, args.evaluations);
  const fs::path out = args.out.empty() ? args.run / "report.html" : args.out;
  for (const std::string& note : run.notes) std::fprintf(stderr, "report: %s\n", note.c_str());
  const report::Report page = report::make_report(run, args.options);
  write_file_atomically(out, page.html);
  size_t validations = 0;
  for (const auto& [task, figures] : run.validation)
    for (const auto& [name, series] : figures) validations = std::max(validations, series.size());
  std::printf("report: %s, %d charts, %.0f KB: %zu steps, %zu validations, %zu evaluations\n", out.c_str(), page.charts,
              double(page.html.size()) / 1024, run.steps.step.size(), validations, run.evaluations.size());
}

}  // namespace

void add_report_command(CLI::App& app) {
  auto args = std::make_shared<ReportArgs>();
  CLI::App* cmd = app.add_subcommand(
      "report",
      "One self-contained HTML page of a run (no network): loss and batch accuracy per task, learning rate with "
      "its cuts, images/s, validation figures over steps, the last validation's confusion matrices, saved "
      "evaluations (the run's eval/ folder and --eval) and config.json");
  cmd->add_option("run", args->run, "Run folder (cuface train --out)")->required();
  cmd->add_option("--out", args->out, "HTML file to write (default RUN/report.html)");
  cmd->add_option("--eval", args->evaluations,
                  "Evaluation outputs to show beside those in RUN/eval/: eval-fr --report (JSON) and --roc (CSV), "
                  "eval-attr --report (JSON)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--buckets", args->options.buckets,
                  "Longer per-step curves are drawn as the mean of this many ranges of steps over their min/max "
                  "outline")
      ->check(CLI::Range(10, 100000))
      ->capture_default_str();
  cmd->callback([args] { run_report(*args); });
}

}  // namespace cuface::cli
