// `cuface identify`: who, among the people of a gallery (`cuface gallery`), is in each photo? The
// photos are embedded as `cuface embed` would (--align / --detect ...), normalised and searched
// against the gallery's templates (face/eval/identification.h); the answer is the best candidate when
// its cosine similarity reaches the threshold, else "unknown". The threshold defaults as verify's
// does (the model run's own validation, else 0.3): a 1:1 figure; for 1:N, where every enrolled person
// is a chance of a false match, measure one with `cuface eval-id` (its thresholds at FPIR 1e-1 / 1e-2).
#include <CLI/CLI.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>

#include "face/cli/commands.h"
#include "face/cli/inference.h"
#include "face/eval/gallery.h"
#include "face/eval/identification.h"

namespace cuface::cli {

namespace fs = std::filesystem;

namespace {

struct IdentifyArgs {
  InferenceFlags flags;
  fs::path gallery;
  std::vector<fs::path> photos;
  int top_k = 5;
  double threshold = NAN;
  std::string format = "table";
};

void run_identify(IdentifyArgs a) {
  const eval::Gallery gallery = eval::read_gallery(a.gallery);  // a missing gallery fails before the model loads
  Inference inference = start_inference(a.flags, eval::Output::Embedding);
  eval::check_gallery_model(gallery, a.gallery, inference.model.model->options().embedding_size,
                            inference.model.file, eval::model_fingerprint(inference.model.file));
  const eval::ImageSource source = eval::file_source(a.photos);
  const eval::EmbedResult embedded = inference.embedder->run(source);
  // Each photo was asked about: one without a face (or landmarks) is an error, not a silent gap.
  for (const auto& [index, why] : embedded.skipped)
    throw Error("'" + source.name(index) + "': " + why + ", so there is no face to identify");

  Context& ctx = *inference.ctx;
  const Tensor templates = ctx.is_cuda() ? gallery.templates.to(Device::CUDA) : gallery.templates;
  const auto start = std::chrono::steady_clock::now();
  const eval::Candidates found = eval::search_gallery(ctx, templates, eval::normalised_rows(embedded.rows), a.top_k);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::string origin;
  const double threshold = same_person_threshold(a.threshold, inference.model.run, origin);

  nlohmann::json results = nlohmann::json::array();
  int64_t known = 0;
  for (int64_t p = 0; p < found.probes; ++p) {
    nlohmann::json candidates = nlohmann::json::array();
    for (int r = 0; r < found.k && found.row_at(p, r) >= 0; ++r)
      candidates.push_back({{"identity", gallery.names[size_t(found.row_at(p, r))]}, {"score", found.score_at(p, r)}});
    const bool answered = found.score_at(p, 0) >= threshold;
    known += answered ? 1 : 0;
    results.push_back({{"photo", a.photos[size_t(p)].string()},
                       {"identity", answered ? candidates[0]["identity"].get<std::string>() : "unknown"},
                       {"score", found.score_at(p, 0)},
                       {"candidates", candidates}});
  }

  if (a.format == "json") {
    const nlohmann::json report = {{"gallery", a.gallery.string()},   {"model", inference.model.file.string()},
                                   {"threshold", threshold},          {"threshold_origin", origin},
                                   {"top_k", a.top_k},                {"results", results}};
    std::printf("%s\n", report.dump(2).c_str());
  } else {
    for (const nlohmann::json& r : results) {
      std::printf("%s: %s (%.4f)\n", r["photo"].get<std::string>().c_str(), r["identity"].get<std::string>().c_str(),
                  r["score"].get<double>());
      int rank = 1;
      for (const nlohmann::json& c : r["candidates"])
        std::printf("  %d. %-40s %.4f\n", rank++, c["identity"].get<std::string>().c_str(), c["score"].get<double>());
    }
  }
  // The summary goes to stderr with --format json, so stdout stays one JSON document.
  std::fprintf(a.format == "json" ? stderr : stdout,
               "identify: %lld photos against %zu people of %s: %lld identified, %lld unknown (cosine threshold "
               "%.4f from %s); search %.3f s, %.0f queries/s (%s)\n",
               (long long)found.probes, gallery.names.size(), a.gallery.string().c_str(), (long long)known,
               (long long)(found.probes - known), threshold, origin.c_str(), seconds,
               double(found.probes) / std::max(seconds, 1e-9), device_description(ctx).c_str());
}

}  // namespace

void add_identify_command(CLI::App& app) {
  auto args = std::make_shared<IdentifyArgs>();
  CLI::App* cmd = app.add_subcommand(
      "identify", "Who is in each photo: the gallery's best candidates by cosine similarity, and the best one when it "
                  "reaches the threshold, else unknown");
  cmd->add_option("PHOTO", args->photos, "Photos to identify")->required()->check(CLI::ExistingFile);
  cmd->add_option("--gallery", args->gallery, "A gallery folder made by cuface gallery")->required();
  add_inference_flags(cmd, args->flags, true, true);
  cmd->remove_option(cmd->get_option("--strict"));  // every photo must show a face: always strict
  cmd->add_option("--top-k", args->top_k, "Candidates listed per photo")->capture_default_str()->check(CLI::Range(1, 1000));
  cmd->add_option("--threshold", args->threshold,
                  "Cosine similarity at or above which the best candidate is the answer (default: as cuface verify's; "
                  "eval-id measures 1:N thresholds)")
      ->check(CLI::Range(-1.0, 1.0));
  cmd->add_option("--format", args->format, "table | json (stdout)")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  cmd->callback([args] { run_identify(*args); });
}

}  // namespace cuface::cli
