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
#include <memory>

#include "face/cli/commands.h"
#include "face/cli/inference.h"

namespace cuface::cli {

namespace fs = std::filesystem;

namespace {

struct VerifyArgs {
  InferenceFlags flags;
  fs::path first, second;
  double threshold = NAN;
};

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
  std::string origin;
  const double threshold = same_person_threshold(a.threshold, inference.model.run, origin);
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
