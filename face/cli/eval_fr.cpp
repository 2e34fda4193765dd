// `cuface eval-fr`: face verification accuracy of embeddings on a pairs list or an InsightFace .bin.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>

#include "engine/error.h"
#include "face/cli/commands.h"
#include "face/eval/insightface_bin.h"
#include "face/eval/report.h"
#include "face/eval/verification.h"

namespace cuface::cli {

namespace fs = std::filesystem;

namespace {

struct EvalFrOptions {
  fs::path embeddings, labels, pairs, bin, images = ".", roc, plot, report;
  int folds = 0;  // 0: the pairs file's own folds when it has at least two, else 10
};

// An InsightFace .bin names no files: row 2i and 2i+1 of the embeddings are pair i's images.
eval::PairEmbeddings bin_pairs(const EvalFrOptions& o) {
  const eval::VerificationBin bin = eval::read_verification_bin(o.bin);
  eval::PairEmbeddings out;
  out.matrix = eval::read_npy(o.embeddings);
  if (out.matrix.size(0) != int64_t(bin.images.size()))
    throw Error(o.embeddings.string() + " has " + std::to_string(out.matrix.size(0)) + " rows but " + o.bin.string() +
                " holds " + std::to_string(bin.images.size()) + " images (one row per image, in the file's order)");
  for (size_t i = 0; i < bin.pairs(); ++i) out.rows.push_back({int64_t(2 * i), int64_t(2 * i + 1)});
  out.same = bin.same;
  return out;
}

void run_eval_fr(const EvalFrOptions& o) {
  eval::PairEmbeddings input;
  int file_folds = 0;
  std::string source;
  if (!o.bin.empty()) {
    input = bin_pairs(o);
    source = o.bin.string();
  } else {
    const eval::PairList pairs = eval::read_pairs(o.pairs);
    file_folds = pairs.folds;
    const fs::path list = o.labels.empty() ? eval::embedding_list_path(o.embeddings) : o.labels;
    input = eval::lookup_pairs(pairs, o.images, eval::read_embeddings(o.embeddings, list), list.string());
    source = o.pairs.string();
  }
  const int folds = o.folds > 0 ? o.folds : file_folds >= 2 ? file_folds : 10;

  const eval::VerificationResult result = eval::evaluate_verification(input, folds);
  std::fputs(eval::verification_summary(result).c_str(), stdout);

  if (!o.roc.empty()) eval::write_roc_csv(o.roc, result.roc);
  if (!o.plot.empty()) eval::write_roc_svg(o.plot, result.roc, "ROC: " + fs::path(source).filename().string(), result.tar_at_far);
  if (!o.report.empty()) {
    nlohmann::json report = eval::verification_json(result);
    report["source"] = source;
    report["embeddings"] = o.embeddings.string();
    eval::write_json(o.report, report);
  }
  const eval::TarAtFar& at_1e3 = result.tar_at_far[2];
  char tar[32] = "not supported";
  if (at_1e3.supported) std::snprintf(tar, sizeof tar, "%.3f%%", 100 * at_1e3.tar);
  std::printf("eval-fr: %s, %lld pairs: accuracy %.3f%% +- %.3f%%, TAR@FAR=1e-3 %s, AUC %.5f\n", source.c_str(),
              (long long)result.pairs, 100 * result.kfold.accuracy_mean, 100 * result.kfold.accuracy_std, tar,
              result.auc);
}

}  // namespace

void add_eval_fr_command(CLI::App& app) {
  auto options = std::make_shared<EvalFrOptions>();
  CLI::App* cmd = app.add_subcommand(
      "eval-fr",
      "Face verification accuracy: the LFW k-fold protocol (as InsightFace), the original project's best "
      "balanced accuracy and gap, TAR at FAR 1e-1..1e-3 (lower where the pairs allow), ROC and AUC");
  cmd->add_option("--embeddings", options->embeddings,
                  "Precomputed embeddings: a float32 [images x dim] .npy, its rows named by the .txt beside it")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--labels", options->labels, "The image path of each embedding row (default: EMB.txt beside EMB.npy)")
      ->check(CLI::ExistingFile);
  CLI::Option* pairs = cmd->add_option("--pairs", options->pairs,
                                       "Pairs: LFW pairs.txt ('folds n' header, 'name i j' / 'name1 i name2 j') "
                                       "or 'pathA pathB 0|1' lines")
                           ->check(CLI::ExistingFile);
  CLI::Option* bin = cmd->add_option("--bin", options->bin,
                                     "An InsightFace verification .bin (lfw.bin, cfp_fp.bin, ...); embedding row "
                                     "2i and 2i+1 are pair i")
                         ->check(CLI::ExistingFile);
  pairs->excludes(bin);
  bin->excludes(pairs);
  cmd->add_option("--images", options->images, "Image root the pair paths are relative to")->capture_default_str();
  cmd->add_option("--folds", options->folds,
                  "Folds of the k-fold protocol (default: the pairs file's folds, else 10)")
      ->check(CLI::Range(2, 1 << 30));
  cmd->add_option("--roc", options->roc, "Write the ROC (cosine threshold, FAR, TAR) as CSV");
  cmd->add_option("--plot", options->plot, "Write the ROC as an SVG chart with a log-scale FAR axis");
  cmd->add_option("--report", options->report, "Write every figure as JSON");
  cmd->callback([options] {
    if (options->pairs.empty() && options->bin.empty())
      throw CLI::RequiredError("eval-fr needs --pairs FILE or --bin FILE");
    run_eval_fr(*options);
  });
}

}  // namespace cuface::cli
