// `cuface demo`: the built-in default job (face/train/demo.h): train the tiny network on LFW (or
// synthetic faces when the data is absent) and report verification accuracy on held-out people.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "face/cli/commands.h"
#include "face/train/demo.h"

namespace cuface::cli {

void add_demo_command(CLI::App& app) {
  auto options = std::make_shared<DemoOptions>();
  CLI::App* cmd = app.add_subcommand(
      "demo", "Train the tiny network on LFW (or synthetic faces), on the CPU unless --device says otherwise, and report "
      "held-out verification accuracy");
  cmd->add_option("--data", options->data, "Folder holding lfw/ (images, landmarks5.txt)")->capture_default_str();
  cmd->add_option("--out", options->out, "Work folder for the packs and the run (replaced)")->capture_default_str();
  cmd->add_flag("--synthetic", options->synthetic, "Use synthetic faces even when LFW is present");
  cmd->add_option("--steps", options->steps, "Training steps")->capture_default_str();
  cmd->add_option("--batch", options->batch, "Images per step")->capture_default_str();
  cmd->add_option("--people", options->max_identities, "Use at most this many people (0: all)")->capture_default_str();
  cmd->add_option("--workers", options->workers, "Loader and packer threads")->capture_default_str();
  cmd->add_option("--margin", options->margin, "arcface | cosface | combined")->capture_default_str();
  cmd->add_option("--margin-s", options->margin_s, "Margin head scale")->capture_default_str();
  cmd->add_option("--margin-m", options->margin_m, "Margin m")->capture_default_str();
  cmd->add_option("--input-size", options->input_size, "Input side in pixels")->capture_default_str();
  cmd->add_option("--seed", options->seed, "Seed of the split and of training")->capture_default_str();
  cmd->add_option("--device", options->device, "cpu | cuda | auto")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}))
      ->capture_default_str();
  cmd->add_option("--precision", options->precision,
                  "auto | fp32 | tf32 | bf16 (auto: bf16 on GPUs with bf16 tensor cores, else fp32; tf32 and bf16 "
                  "need a GPU)")
      ->check(CLI::IsMember({"auto", "fp32", "tf32", "bf16"}))
      ->capture_default_str();
  cmd->callback([options] {
    DemoResult r = run_demo(*options);
    if (r.stop_signal) {  // as `cuface train`: the status a shell expects of an interrupted program
      std::printf("demo: interrupted\n");
      std::fflush(stdout);
      std::exit(128 + r.stop_signal);
    }
    std::printf(
        "demo: tiny ResNet trained on %lld %s people (%lld images), %lld steps in %.0f s; mean loss of the first 10 "
        "steps %.2f, of the last 10 %.2f; verification of %lld held-out people on %lld pairs: best balanced accuracy "
        "%.3f (its threshold chosen on these pairs, as the original; untrained %.3f, chance 0.5), 10-fold accuracy "
        "%.3f +- %.3f (thresholds chosen on the other folds)\n",
        (long long)r.train_people, r.dataset.c_str(), (long long)r.train_images, (long long)options->steps, r.seconds,
        r.first_loss, r.final_loss, (long long)r.held_out_people, (long long)r.pairs, r.accuracy, r.accuracy_before,
        r.kfold_mean, r.kfold_std);
  });
}

}  // namespace cuface::cli
