// `cuface pack`: turn a folder tree, list file, UTKFace folder or MXNet RecordIO into shards
// (docs/pack-format.md), and `cuface pack --verify` to check every record of a pack or shard.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>

#include "engine/error.h"
#include "face/cli/commands.h"
#include "face/cli/progress.h"
#include "face/cli/skip_report.h"
#include "face/pack/packer.h"
#include "face/pack/verify.h"

namespace cuface::cli {

namespace {

struct PackArguments {
  PackOptions options;
  std::string encoding = "jpeg";
  std::string labels = "identity";
  std::string detect_mode = "align";
  std::string verify;
  std::string command;
};

void run_verify(const PackArguments& args) {
  const Pack pack(args.verify);
  Progress progress("verifying", "records");
  const VerifyResult result = verify_pack(pack, args.options.jobs, [&](int64_t done, int64_t total) {
    progress.update(done, total);
  });
  progress.finish();
  if (result.first_bad >= 0) throw Error("verify failed: " + result.error);
  std::printf("%s: %lld records in %zu shard(s) verified: every CRC matches, every label is in range and every image "
              "decodes (%.1f s)\n",
              args.verify.c_str(), (long long)result.records, pack.shards().size(), progress.seconds());
}

void run_pack(PackArguments& args) {
  PackOptions& options = args.options;
  if (options.input.empty()) throw Error("pack: INPUT is required (or --verify SHARD)");
  if (args.encoding == "jpeg") options.encoding = Encoding::Jpeg;
  else if (args.encoding == "raw") options.encoding = Encoding::Raw;
  else throw Error("--encoding must be jpeg or raw, got '" + args.encoding + "'");
  if (args.labels == "identity") options.tree_label = TreeLabel::Identity;
  else if (args.labels == "gender") options.tree_label = TreeLabel::Gender;
  else if (args.labels == "age") options.tree_label = TreeLabel::Age;
  else throw Error("--labels must be identity, gender or age, got '" + args.labels + "'");
  options.crop.mode = args.detect_mode == "crop" ? DetectMode::Crop : DetectMode::Align;
  options.command = args.command;

  Progress progress("packing", "images");
  SkipReport skips(&progress);
  options.on_skip = [&](const std::string& path, const std::string& reason) { skips.add(path, reason); };
  options.progress = [&](int64_t done, int64_t total) { progress.update(done, total); };
  const PackSummary summary = pack_images(options);
  progress.finish();
  skips.print_reasons();
  if (int(summary.shard_files.size()) < options.shards)
    std::fprintf(stderr, "note: --shards %d for %lld images: %zu shard(s) written, none of them empty\n", options.shards,
                 (long long)summary.packed, summary.shard_files.size());
  std::printf("packed %lld images of %lld classes into %zu shard(s) %s-*.cfpk + %s in %.1f s (%.0f images/s); "
              "%lld skipped, %lld dropped by --min-per-class\n",
              (long long)summary.packed, (long long)summary.classes, summary.shard_files.size(), options.out.c_str(),
              summary.sidecar.c_str(), summary.seconds, summary.seconds > 0 ? summary.packed / summary.seconds : 0.0,
              (long long)summary.skipped, (long long)summary.dropped);
}

}  // namespace

void add_pack_command(CLI::App& app) {
  auto args = std::make_shared<PackArguments>();
  CLI::App* cmd = app.add_subcommand(
      "pack",
      "Pack face images into shards (PREFIX-NNNNN-of-NNNNN.cfpk + PREFIX.json) for training, or --verify a pack");
  PackOptions& o = args->options;
  cmd->add_option("INPUT", o.input,
                  "Folder tree root/<label>/<images>, list file, UTKFace folder, train.rec, or the original's NAME.idx");
  cmd->add_option("--format", o.format,
                  "Input kind: tree, list (lines 'path identity [gender age]'), utkface, rec (MXNet RecordIO), "
                  "legacy (the original project's .bin + .idx)")
      ->check(CLI::IsMember({"tree", "list", "utkface", "rec", "legacy"}))
      ->capture_default_str();
  cmd->add_option("--out", o.out, "Output PREFIX (what --train-sets takes later); its folder is created if needed");
  cmd->add_option("--align", o.landmarks,
                  "Landmark file (LFW landmarks5.txt format): warp each face onto the ArcFace 5-point template");
  CLI::Option* detect = cmd->add_flag("--detect", o.detect,
                "Find the largest face in each image (dlib HOG detector + 68-point landmarks reduced to 5) and "
                "align it as --align does; images without a face are skipped by name (--strict: error)");
  cmd->add_option("--detect-mode", args->detect_mode,
                  "With --detect: align (5 points onto the ArcFace template) or crop (the face box enlarged by "
                  "--pad on each side, resized; the original project's detector crop)")
      ->check(CLI::IsMember({"align", "crop"}))
      ->needs(detect)
      ->capture_default_str();
  cmd->add_option("--pad", o.crop.pad,
                  "With --detect-mode crop: margin added on each side, as a fraction of the box side")
      ->needs(detect)
      ->capture_default_str();
  cmd->add_option("--landmark-model", o.landmark_model, "With --detect: dlib's 68-point shape predictor file")
      ->needs(detect)
      ->capture_default_str();
  cmd->add_option("--size", o.size, "Output side in pixels (112 or 224)")->capture_default_str();
  cmd->add_option("--min-per-class", o.min_per_class,
                  "Drop identities with fewer packed images (images skipped as unreadable or without landmarks or a "
                  "face do not count)")
      ->capture_default_str();
  cmd->add_option("--shards", o.shards, "Number of shard files (at most one per packed image)")->capture_default_str();
  cmd->add_option("--jobs", o.jobs, "Decode/encode threads (0: all cores)")->capture_default_str();
  cmd->add_option("--encoding", args->encoding, "Stored pixels: jpeg (compact) or raw (fastest to load)")
      ->capture_default_str();
  cmd->add_option("--quality", o.quality, "JPEG quality of re-encoded images")->capture_default_str();
  cmd->add_option("--labels", args->labels, "What tree folder names (or legacy .idx labels) are: identity, gender or age")
      ->capture_default_str();
  cmd->add_flag("--strict", o.strict,
                "Fail on the first unreadable image (with --detect: or one without a face) instead of skipping it");
  cmd->add_option("--verify", args->verify,
                  "Check every record of a pack or shard: its CRC, its labels (identity below the pack's class count) "
                  "and a strict decode of its image");
  cmd->callback([args] {
    args->command = command_line();
    if (!args->verify.empty()) run_verify(*args);
    else run_pack(*args);
  });
}

}  // namespace cuface::cli
