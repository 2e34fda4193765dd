// `cuface verify`: are two face images the same person? The cosine similarity of their embeddings
// against a threshold.
//
// The threshold. A model's own best threshold is what it should be judged by, so by default it comes
// from the model's run folder: the last FR validation's `best_threshold` in valid.csv (the Euclidean
// distance d of normalised embeddings that separated the validation pairs best), converted to a
// cosine by |a - b|^2 = 2 - 2 cos, i.e. cos = 1 - d^2 / 2. Without a run folder the default is a
// cosine of 0.3 (squared distance 1.4), which is our choice, not a measured figure: it is near where
// InsightFace's LFW 10-fold thresholds for ArcFace-trained models fall (squared distances about 1.4
// to 1.6). A validation threshold is not used when it cannot be trusted: a best balanced accuracy
// below 0.6 (near chance) or a threshold on the edge of the searched grid; verify says so and uses
// the default. For decisions that matter, measure the model's threshold with `cuface eval-fr --model`
// and pass it with --threshold.
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "face/cli/commands.h"
#include "face/cli/inference.h"
#include "face/eval/metrics.h"

namespace cuface::cli {

namespace fs = std::filesystem;

namespace {

constexpr double kDefaultCosineThreshold = 0.3;

struct VerifyArgs {
  InferenceFlags flags;
  fs::path first, second;
  double threshold = NAN;
};

// The run's last FR validation (valid.csv rows "step,task,figure,value"): its best_threshold as a
// cosine, and why it cannot be trusted when it cannot. NAN when the run has none.
struct ValidatedThreshold {
  double cosine = NAN;
  std::string source;      // "the run's validation at step S (distance D)"
  std::string unreliable;  // empty when the figure can be used
};

// A balanced accuracy this close to chance (0.5) is what a maximum over 141 thresholds finds in
// noise; a best threshold on the edge of the grid means the optimum lies outside it.
constexpr double kReliableAccuracy = 0.6;

ValidatedThreshold validated_threshold(const fs::path& run) {
  ValidatedThreshold out;
  if (run.empty()) return out;
  std::ifstream in(run / "valid.csv");
  std::map<std::string, std::pair<double, double>> by_step;  // step -> (distance, accuracy); NAN when absent
  std::string last_step;
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string step, task, figure, value;
    if (!std::getline(fields, step, ',') || !std::getline(fields, task, ',') || !std::getline(fields, figure, ',') ||
        !std::getline(fields, value) || task != "FR" || (figure != "best_threshold" && figure != "best_accuracy"))
      continue;
    char* end = nullptr;
    const double number = std::strtod(value.c_str(), &end);
    if (end == value.c_str() || !std::isfinite(number)) continue;
    auto& figures = by_step.try_emplace(step, NAN, NAN).first->second;
    (figure == "best_threshold" ? figures.first : figures.second) = number;
    if (figure == "best_threshold") last_step = step;
  }
  if (last_step.empty()) return out;
  const auto [distance, accuracy] = by_step[last_step];
  out.cosine = 1.0 - distance * distance / 2.0;
  char text[160];
  std::snprintf(text, sizeof text, "the run's validation at step %s (distance %.4f, best balanced accuracy %.3f)",
                last_step.c_str(), distance, accuracy);
  out.source = text;
  const std::vector<double> grid = eval::original_thresholds();
  if (!(accuracy >= kReliableAccuracy)) {
    std::snprintf(text, sizeof text, "its accuracy is below %.1f, near chance (0.5)", kReliableAccuracy);
    out.unreliable = text;
  } else if (distance <= grid.front() + 1e-9 || distance >= grid.back() - 1e-9) {
    std::snprintf(text, sizeof text, "it lies on the edge of the searched distances %.1f to %.1f", grid.front(),
                  grid.back());
    out.unreliable = text;
  }
  return out;
}

double cosine_of(const Tensor& rows) {
  const int64_t dim = rows.size(1);
  const float* a = rows.data<float>();
  const float* b = a + dim;
  double dot = 0, na = 0, nb = 0;
  for (int64_t k = 0; k < dim; ++k) {
    dot += double(a[k]) * double(b[k]);
    na += double(a[k]) * double(a[k]);
    nb += double(b[k]) * double(b[k]);
  }
  CUFACE_CHECK(na > 0 && nb > 0, "an embedding is zero; the cosine is undefined");
  return dot / std::sqrt(na * nb);
}

void run_verify(VerifyArgs a) {
  a.flags.strict = true;  // two images: a skipped one leaves nothing to compare
  Inference inference = start_inference(a.flags, eval::Output::Embedding);
  const std::vector<fs::path> files{a.first, a.second};
  const eval::ImageSource source = eval::file_source(files);
  const eval::EmbedResult result = inference.embedder->run(source);
  report_skipped(result.skipped, source.name, true);

  const double cosine = cosine_of(result.rows);
  std::string origin = "--threshold";
  double threshold = a.threshold;
  if (std::isnan(threshold)) {
    const ValidatedThreshold validated = validated_threshold(inference.model.run);
    threshold = kDefaultCosineThreshold;
    origin = "the default (no validation figure in the model's run folder; see --help)";
    if (!validated.unreliable.empty()) {
      std::fprintf(stderr, "note: not using %s: the threshold is unreliable, %s\n", validated.source.c_str(),
                   validated.unreliable.c_str());
      origin = "the default (the run's validation threshold is unreliable; see above)";
    } else if (!std::isnan(validated.cosine)) {
      threshold = validated.cosine;
      origin = validated.source;
    }
  }
  std::printf("cosine similarity %.6f (squared distance %.6f)\n", cosine, 2.0 - 2.0 * cosine);
  std::printf("verify: %s  (cosine %.4f %s threshold %.4f from %s)\n",
              cosine >= threshold ? "same person" : "different people", cosine, cosine >= threshold ? ">=" : "<",
              threshold, origin.c_str());
}

}  // namespace

void add_verify_command(CLI::App& app) {
  auto args = std::make_shared<VerifyArgs>();
  CLI::App* cmd = app.add_subcommand(
      "verify",
      "Same person or not: the cosine similarity of two images' embeddings against a threshold (default: the model's "
      "own best validation threshold from its run folder, else cosine 0.3, a typical ArcFace operating point; "
      "measure yours with eval-fr --model)");
  cmd->add_option("A", args->first, "First image")->required()->check(CLI::ExistingFile);
  cmd->add_option("B", args->second, "Second image")->required()->check(CLI::ExistingFile);
  add_inference_flags(cmd, args->flags, true, true);
  cmd->add_option("--threshold", args->threshold, "Cosine similarity at or above which the two are the same person")
      ->check(CLI::Range(-1.0, 1.0));
  cmd->callback([args] { run_verify(*args); });
}

}  // namespace cuface::cli
