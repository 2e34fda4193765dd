// `cuface train FR|Gender|Age|multi --train-sets A[,B] --out runs/NAME ...` and
// `cuface train --resume runs/NAME`: the product's main job (face/train/trainer.h).
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>

#include "engine/error.h"
#include "face/cli/commands.h"
#include "face/cli/progress.h"
#include "face/train/recipe.h"
#include "face/train/trainer.h"

namespace cuface::cli {

namespace {

struct TrainArguments {
  TrainConfig config;
  std::string config_file;
  std::string resume;
  std::string time_budget;  // as written ("30m"); TrainConfig::time_budget holds its seconds
};

// `flag`: the flag that named the file (--config FILE, or --resume RUN for RUN/config.json).
nlohmann::json read_config_file(const std::string& path, const std::string& flag) {
  std::ifstream in(path);
  CUFACE_CHECK(in.good(), flag + ": cannot read '" + path + "'");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw cuface::Error(flag + ": '" + path + "' is not valid JSON: " + e.what());
  }
}

void run_train(CLI::App& cmd, TrainArguments& args) {
  if (cmd.count("--time-budget")) args.config.time_budget = parse_duration(args.time_budget, "--time-budget");
  TrainConfig config;
  if (!args.resume.empty()) {
    // The run's config.json decides everything else; a flag that would be silently ignored is an error.
    for (CLI::Option* option : cmd.get_options()) {
      const std::string name = option->get_name();
      CUFACE_CHECK(option->count() == 0 || name == "--resume" || name == "--steps" || name == "--epochs" ||
                       name == "--time-budget",
                   "--resume continues with the settings in the run's config.json: " +
                       (option->get_lnames().empty() ? "the task" : name) +
                       " cannot be given with it (only --steps, --epochs or --time-budget, to extend the run)");
    }
    const std::filesystem::path config_path = std::filesystem::path(args.resume) / "config.json";
    CUFACE_CHECK(std::filesystem::exists(config_path), "--resume: '" + args.resume + "' has no config.json");
    config = TrainConfig::from_json(read_config_file(config_path.string(), "--resume"));
    config.out = args.resume;
    // A finished run can be extended: --steps / --epochs / --time-budget given with --resume replace
    // the stored ones (a budget is the whole run's, the time already trained included).
    if (cmd.count("--steps")) config.steps = args.config.steps;
    if (cmd.count("--epochs")) config.epochs = args.config.epochs;
    if (cmd.count("--time-budget")) config.time_budget = args.config.time_budget;
  } else {
    // Defaults, then the recipe's settings, then the --config file, then the flags given on the
    // command line; config.json records the result.
    nlohmann::json from_file = nlohmann::json::object();
    if (!args.config_file.empty()) from_file = read_config_file(args.config_file, "--config");
    const std::string recipe = cmd.count("--recipe") ? args.config.recipe : from_file.value("recipe", std::string());
    nlohmann::json merged = TrainConfig().to_json();
    merged.update(recipe_settings(recipe));
    merged.update(from_file);
    merged["recipe"] = recipe;
    nlohmann::json from_flags = args.config.to_json();
    for (CLI::Option* option : cmd.get_options()) {
      if (option->count() == 0 || option->get_lnames().empty()) continue;
      std::string key = option->get_lnames()[0];
      std::replace(key.begin(), key.end(), '-', '_');
      if (from_flags.contains(key)) merged[key] = from_flags[key];
    }
    if (cmd.count("--margin-m")) merged["margin_m_set"] = true;
    if (cmd.count("task")) merged["task"] = args.config.task;
    // Balanced batches set the batch size unless it is given (then it must agree: TrainConfig::validate).
    if (merged.value("ids_per_batch", 0) > 0 && !cmd.count("--batch") && !from_file.contains("batch"))
      merged["batch"] = merged["ids_per_batch"].get<int>() * merged.value("imgs_per_id", 0);
    config = TrainConfig::from_json(merged);
  }
  TrainSummary summary = train(config, !args.resume.empty());
  if (summary.leader) {
    // The validation score is the first task's: FR's same/different distance gap, else mean class accuracy.
    char best[96] = "";
    if (!std::isnan(summary.best_score))
      std::snprintf(best, sizeof best, ", best validation %s %.4f", config.task == "Gender" || config.task == "Age"
                                                                       ? "mean class accuracy"
                                                                       : "gap",
                    summary.best_score);
    std::printf("train: %lld steps, final loss %.4f, %s%s; run in %s%s\n", (long long)summary.steps,
                summary.final_loss, summary.stopped_because.c_str(), best, config.out.c_str(),
                summary.stop_signal ? (" (continue it with cuface train --resume " + config.out + ")").c_str() : "");
  }
  // Stopped by a signal, after its checkpoint: the status a shell expects of a program it interrupted.
  if (summary.stop_signal) {
    std::fflush(stdout);
    std::exit(128 + summary.stop_signal);
  }
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto args = std::make_shared<TrainArguments>();
  TrainConfig& c = args->config;
  CLI::App* cmd = app.add_subcommand("train", "Train a face model (FR with a margin head, Gender, Age, or multi)");
  cmd->add_option("task", c.task, "FR | Gender | Age | multi (default FR)")->check(CLI::IsMember({"FR", "Gender", "Age", "multi"}));
  cmd->add_option("--resume", args->resume,
                  "Continue the run in this folder exactly where its last checkpoint was (its logs are cut back to "
                  "that step); with --steps or --epochs beyond it, a finished run trains further");
  cmd->add_option("--config", args->config_file, "JSON file of settings (keys as in config.json; flags override)");
  cmd->add_option("--recipe", c.recipe,
                  "small | large: a set of defaults for the data's size (below); flags and --config override it")
      ->check(CLI::IsMember({"small", "large"}));
  cmd->add_option("--train-sets", c.train_sets, "Pack prefixes to train on (cuface pack --out)")->delimiter(',');
  cmd->add_option("--valid-sets", c.valid_sets, "Pack prefixes to validate on")->delimiter(',');
  cmd->add_option("--out", c.out,
                  "Run folder (config.json, loss_debug.csv, checkpoints), created if missing. One trainer writes a "
                  "folder at a time; a folder holding another run's files is refused, never appended to: --resume "
                  "it, or remove it (a run that ended before its first checkpoint cannot be resumed)");
  cmd->add_option("--arch", c.arch, "resnet50 | resnet18 | resnet34 | resnet100 | tiny")->capture_default_str();
  cmd->add_option("--input-size", c.input_size, "Input side in pixels (112 or 224)")->capture_default_str();
  cmd->add_option("--init", c.init, "Initialise the backbone from a torchvision-named safetensors file");
  cmd->add_option("--embedding-size", c.embedding_size, "Embedding dimension")->capture_default_str();
  cmd->add_option("--margin", c.margin, "arcface | cosface | combined")->capture_default_str();
  cmd->add_option("--margin-s", c.margin_s, "Margin head scale s")->capture_default_str();
  cmd->add_option("--margin-m", c.margin_m, "Margin m (ArcFace 0.5; CosFace default 0.35)");
  cmd->add_option("--margin-m1", c.margin_m1, "Combined margin m1")->capture_default_str();
  cmd->add_option("--margin-m2", c.margin_m2, "Combined margin m2")->capture_default_str();
  cmd->add_option("--margin-m3", c.margin_m3, "Combined margin m3")->capture_default_str();
  cmd->add_flag("--easy-margin", c.easy_margin, "ArcFace: apply the margin only where cos(theta) > 0");
  cmd->add_option("--sample-rate", c.sample_rate,
                  "Partial FC: fraction of class centres per step (per rank with --shard-classes)")
      ->capture_default_str();
  cmd->add_option("--age-edges", c.age_edges, "First ages of age bins 1.. (default 13,20,30,40,50,60)")->delimiter(',');
  cmd->add_option("--bn-momentum", c.bn_momentum, "BatchNorm momentum, PyTorch convention")->capture_default_str();
  cmd->add_option("--batch", c.batch, "Images per step (update) and rank (mpirun -np K: K x batch per step)")->capture_default_str();
  cmd->add_option("--ids-per-batch", c.ids_per_batch,
                  "Class-balanced batches: P identities per batch (Gender/Age runs: P classes); with --imgs-per-id "
                  "K the batch is P x K. Each epoch visits every class once; a class with fewer than K images is "
                  "sampled with replacement. Without it: plain shuffling");
  cmd->add_option("--imgs-per-id", c.imgs_per_id, "Class-balanced batches: K images of each class in a batch");
  cmd->add_option("--accumulate", c.accumulate,
                  "Sum gradients over N micro-batches of --batch / N before each update (BN statistics per "
                  "micro-batch; loss, LR schedule and logging per update)")
      ->capture_default_str();
  cmd->add_option("--steps", c.steps, "Steps to train (0: --epochs)")->capture_default_str();
  cmd->add_option("--epochs", c.epochs, "Epochs to train when --steps is 0")->capture_default_str();
  cmd->add_option("--time-budget", args->time_budget,
                  "Train for this wall-clock time (30m, 1h30m, 90s) instead of --steps/--epochs: the LR schedule "
                  "(warm-up, cosine decay) is laid over it, and the last checkpoint and validation follow it");
  cmd->add_option("--lr", c.lr, "Initial learning rate")->capture_default_str();
  cmd->add_option("--lr-fr", c.lr_fr, "Initial learning rate of an FR run (default --lr)");
  cmd->add_option("--lr-gender", c.lr_gender, "Initial learning rate of a Gender run (default --lr)");
  cmd->add_option("--lr-age", c.lr_age, "Initial learning rate of an Age run (default --lr)");
  cmd->add_option("--momentum", c.momentum, "SGD momentum")->capture_default_str();
  cmd->add_option("--wd-backbone", c.wd_backbone, "Weight decay of the backbone")->capture_default_str();
  cmd->add_option("--wd-fr", c.wd_fr, "Weight decay of the embedding and FR head")->capture_default_str();
  cmd->add_option("--wd-gender", c.wd_gender, "Weight decay of the gender branch")->capture_default_str();
  cmd->add_option("--wd-age", c.wd_age, "Weight decay of the age branch")->capture_default_str();
  cmd->add_option("--lr-schedule", c.lr_schedule,
                  "plateau | step | cosine. plateau lowers the LR only after --patience steps without a falling "
                  "loss, so a run no longer than that trains at a constant LR")
      ->capture_default_str();
  cmd->add_option("--patience", c.patience,
                  "Plateau: steps without decrease before shrinking (none can happen before this many steps)")
      ->capture_default_str();
  cmd->add_option("--lr-shrink", c.lr_shrink, "Plateau/step: LR factor")->capture_default_str();
  cmd->add_option("--min-lr", c.min_lr, "Plateau: stop below this LR; cosine: final LR")->capture_default_str();
  cmd->add_option("--lr-steps", c.lr_steps, "Step schedule milestones")->delimiter(',');
  cmd->add_option("--warmup", c.warmup, "Linear warm-up steps")->capture_default_str();
  cmd->add_option("--weight-fr", c.weight_fr, "multi: weight of the FR loss")->capture_default_str();
  cmd->add_option("--weight-gender", c.weight_gender, "multi: weight of the gender loss")->capture_default_str();
  cmd->add_option("--weight-age", c.weight_age, "multi: weight of the age loss")->capture_default_str();
  cmd->add_option("--multi-mode", c.multi_mode,
                  "multi: sum the weighted task losses every step, or alternate: step s trains task s mod T "
                  "(FR, Gender, Age in turn; the other branches rest; the LR schedule sees each step's task loss)")
      ->check(CLI::IsMember({"sum", "alternate"}))
      ->capture_default_str();
  cmd->add_option("--embedding-dropout", c.embedding_dropout, "Dropout before the embedding FC")->capture_default_str();
  cmd->add_flag("--sync-bn", c.sync_bn, "mpirun: BatchNorm statistics over the whole batch of every rank");
  cmd->add_option("--gradient-wire", c.gradient_wire, "mpirun: average gradients in f32, or bf16 (half the traffic)")
      ->capture_default_str();
  cmd->add_flag("--shard-classes", c.shard_classes, "mpirun: split the FR head's classes over the ranks (model parallel)");
  cmd->add_flag("--freeze-backbone", c.freeze_backbone, "Train only the task branches (no backbone gradients)");
  cmd->add_option("--device", c.device, "cpu | cuda | auto")->capture_default_str();
  cmd->add_option("--precision", c.precision,
                  "auto | fp32 | tf32 | bf16. auto: bf16 mixed precision (bf16 activations and weight copies, "
                  "fp32 master weights and accumulation) on GPUs with bf16 tensor cores (compute capability 8.0+), "
                  "fp32 elsewhere; the CPU always trains in fp32")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "fp32", "tf32", "bf16"}));
  cmd->add_option("--cuda-graph", c.cuda_graph,
                  "auto | off. auto: on a GPU, the whole training step (forward, backward, SGD update; the step "
                  "number and LR read from the device) is captured as a CUDA graph at the second step and replayed "
                  "every step; one process, --accumulate 1, no --profile, --freeze-backbone or --multi-mode "
                  "alternate only")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "off"}));
  cmd->add_flag("--deterministic", c.deterministic,
                "GPU: choose only cuDNN convolution algorithms whose results are the same every run (often slower); "
                "the CPU and our own CUDA kernels are deterministic anyway");
  cmd->add_option("--workers", c.workers, "Loader threads")->capture_default_str();
  cmd->add_option("--seed", c.seed, "Seed of every random draw")->capture_default_str();
  cmd->add_flag("--flip,!--no-flip", c.flip, "Mirror each training image left-right with probability 1/2 (default on)");
  cmd->add_option("--scale-jitter", c.scale_jitter,
                  "Zoom each training image by a factor uniform in [1 - J, 1 + J] (0: off)")
      ->capture_default_str();
  cmd->add_option("--shift-jitter", c.shift_jitter,
                  "Shift each training image by up to J x its side, uniform on each axis (0: off)")
      ->capture_default_str();
  cmd->add_option("--colour-jitter", c.colour_jitter,
                  "Scale each training image's brightness, contrast and saturation by factors uniform in "
                  "[1 - J, 1 + J] (0: off)")
      ->capture_default_str();
  cmd->add_option("--log-every", c.log_every, "Steps between progress lines")->capture_default_str();
  cmd->add_option("--valid-every", c.valid_every, "Steps between validations (0: at the end)")->capture_default_str();
  cmd->add_option("--valid-pairs", c.valid_pairs, "FR validation: sampled pairs (at least 20)")->capture_default_str();
  cmd->add_option("--checkpoint-every", c.checkpoint_every, "Steps between checkpoints (0: at the end)")
      ->capture_default_str();
  cmd->add_option("--keep-checkpoints", c.keep_checkpoints, "Checkpoints kept")->capture_default_str();
  cmd->add_flag("--profile", c.profile,
                "Time each kind of layer and pass (CUDA events on a GPU, the clock on the CPU) over every step but "
                "the first: a table of time, share, calls and GFLOP/s or GB/s at the end, also in the run folder "
                "(profile.txt, profile.csv); on a GPU it adds one synchronisation per step");
  cmd->footer(
      recipes_help() + "\n\n"
      "Ctrl-C (SIGINT) or SIGTERM saves a checkpoint at the end of the current step and exits with status 130 "
      "(SIGTERM: 143); a second Ctrl-C stops at once, keeping the checkpoint before. Continue with --resume.");
  cmd->callback([cmd, args] { run_train(*cmd, *args); });
}

}  // namespace cuface::cli
