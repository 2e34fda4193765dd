// `cuface eval-fr`: face verification accuracy of embeddings on a pairs list, an InsightFace .bin, or
// repeated random pair sets. The embeddings are precomputed (.npy + .txt), or computed by a model
// (--model): through eval::embed_pairs (face/eval/verification.h), which embeds just the images the
// pairs name, or from the JPEGs inside a .bin.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <sstream>

#include "engine/error.h"
#include "face/cli/commands.h"
#include "face/cli/inference.h"
#include "face/cli/progress.h"
#include "face/eval/insightface_bin.h"
#include "face/eval/pair_sampler.h"
#include "face/eval/report.h"
#include "face/eval/verification.h"
#include "face/train/validation.h"

namespace cuface::cli {

namespace fs = std::filesystem;

namespace {

struct EvalFrOptions {
  fs::path embeddings, labels, pairs, bin, images = ".", roc, plot, report;
  int folds = 0;  // 0: the pairs file's own folds when it has at least two, else 10
  int64_t sample = 0;
  int repeat = 5;
  uint64_t seed = 1;
  InferenceFlags model;  // --model and its input flags
  std::vector<std::string> packs;  // --sample with --model: identity-labelled packs to embed
};

// Drops the pairs that use an image the model skipped (no face / no landmarks), saying how many.
void drop_skipped(eval::PairEmbeddings& input, const std::vector<std::pair<size_t, std::string>>& skipped) {
  if (skipped.empty()) return;
  std::vector<uint8_t> gone(size_t(input.matrix.size(0)), 0);
  for (const auto& [row, why] : skipped) gone[row] = 1;
  eval::PairEmbeddings kept{input.matrix, {}, {}};
  for (size_t i = 0; i < input.rows.size(); ++i) {
    if (gone[size_t(input.rows[i][0])] || gone[size_t(input.rows[i][1])]) continue;
    kept.rows.push_back(input.rows[i]);
    kept.same.push_back(input.same[i]);
  }
  std::printf("%zu images skipped: %zu of %zu pairs dropped\n", skipped.size(), input.rows.size() - kept.rows.size(),
              input.rows.size());
  CUFACE_CHECK(!kept.rows.empty(), "every pair uses a skipped image");
  input = std::move(kept);
}

// --model with --pairs: embed the images the pairs name. With --bin: embed the .bin's JPEGs in order.
eval::PairEmbeddings model_pairs(const EvalFrOptions& o, int& file_folds) {
  Inference inference = start_inference(o.model, eval::Output::Embedding);
  Progress progress("embedding", "images");
  auto report = [&](int64_t done, int64_t total) { progress.update(done, total); };
  eval::PairEmbeddings input;
  std::vector<std::pair<size_t, std::string>> skipped;
  if (!o.bin.empty()) {
    auto bin = std::make_shared<const eval::VerificationBin>(eval::read_verification_bin(o.bin));
    const std::string name = o.bin.filename().string();
    const eval::ImageSource source{bin->images.size(),
                                   [bin](size_t i) {
                                     const auto bytes = bin->image(i);
                                     return std::vector<uint8_t>(bytes.begin(), bytes.end());
                                   },
                                   [name](size_t i) { return name + "#" + std::to_string(i); }};
    const eval::EmbedResult r = inference.embedder->run(source, report);
    progress.finish();
    report_skipped(r.skipped, source.name, o.model.strict);
    CUFACE_CHECK(!r.kept.empty(), "no image of " + o.bin.string() + " could be embedded");
    const int64_t dim = r.rows.size(1);
    input.matrix = Tensor::zeros({int64_t(source.count), dim});
    for (size_t k = 0; k < r.kept.size(); ++k)
      std::copy_n(r.rows.data<float>() + int64_t(k) * dim, dim, input.matrix.data<float>() + int64_t(r.kept[k]) * dim);
    skipped = r.skipped;
    for (size_t i = 0; i < bin->pairs(); ++i) input.rows.push_back({int64_t(2 * i), int64_t(2 * i + 1)});
    input.same = bin->same;
  } else {
    const eval::PairList pairs = eval::read_pairs(o.pairs);
    file_folds = pairs.folds;
    input = eval::embed_pairs(pairs, o.images, eval::image_embedder(*inference.embedder, &skipped, report));
    progress.finish();
    const std::vector<std::string> images = pairs.images();
    report_skipped(skipped, [&](size_t row) { return (o.images / images[row]).string(); }, o.model.strict);
  }
  std::printf("embedded %lld images with %s in %.1f s (%.1f images/s, %s)\n", (long long)input.matrix.size(0),
              inference.model.file.string().c_str(), progress.seconds(),
              double(input.matrix.size(0)) / std::max(progress.seconds(), 1e-9), device_description(*inference.ctx).c_str());
  drop_skipped(input, skipped);
  return input;
}

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

// The images --sample draws pairs from, with each one's identity: the rows of --embeddings (the person
// being the folder of each image), or every image of --pack embedded by --model (the pack's labels).
PackEmbeddings sampling_population(const EvalFrOptions& o, std::string& source) {
  if (!o.model.model.empty()) {
    Inference inference = start_inference(o.model, eval::Output::Embedding);
    ValidationOptions options;
    options.packs = o.packs;
    options.image_size = o.model.input_size > 0 ? o.model.input_size : inference.model.input_size;
    options.batch = o.model.batch;
    options.workers = o.model.workers;
    const auto start = std::chrono::steady_clock::now();
    PackEmbeddings embedded = embed_pack(*inference.ctx, *inference.model.model, options);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("embedded %lld pack images with %s in %.1f s (%.1f embeddings/s)\n", (long long)embedded.identity.size(),
                inference.model.file.string().c_str(), seconds, double(embedded.identity.size()) / std::max(seconds, 1e-9));
    source = inference.model.file.string() + " on " + o.packs.front() + (o.packs.size() > 1 ? ",..." : "");
    return embedded;
  }
  const fs::path list = o.labels.empty() ? eval::embedding_list_path(o.embeddings) : o.labels;
  eval::Embeddings embeddings = eval::read_embeddings(o.embeddings, list);
  std::vector<std::string> people;
  for (const std::string& path : embeddings.paths) people.push_back(fs::path(path).parent_path().string());
  source = o.embeddings.string();
  return {embeddings.matrix, eval::identity_numbers(people)};
}

// --sample K --repeat R: R random sets of K pairs among the population's images; every figure is
// reported as mean +- std (population) over the repeats.
void run_sampled(const EvalFrOptions& o) {
  std::string source;
  const PackEmbeddings population = sampling_population(o, source);
  const std::vector<int>& identity = population.identity;
  const int folds = o.folds > 0 ? o.folds : 10;

  // Scalars summarised over repeats, by report key.
  std::vector<std::string> keys{"accuracy_mean", "threshold", "best_accuracy", "gap", "auc"};
  std::map<std::string, std::vector<double>> values;
  nlohmann::json repeats = nlohmann::json::array();
  for (int r = 0; r < o.repeat; ++r) {
    const eval::SampledPairs sampled = eval::sample_pairs(identity, o.sample, o.seed, uint64_t(r));
    const eval::VerificationResult result =
        eval::evaluate_verification({population.matrix, sampled.rows, sampled.same}, folds);
    nlohmann::json report = eval::verification_json(result);
    report.erase("definitions");
    for (const std::string& key : keys) values[key].push_back(report[key].get<double>());
    for (const eval::TarAtFar& t : result.tar_at_far)
      if (t.supported) values["tar_at_far_" + (std::ostringstream() << t.far_target).str()].push_back(t.tar);
    std::printf("repeat %d/%d: %d-fold accuracy %.3f%%, best balanced accuracy %.3f%%, gap %.4f, AUC %.6f\n", r + 1,
                o.repeat, folds, 100 * result.kfold.accuracy_mean, 100 * result.best.accuracy, result.gap, result.auc);
    repeats.push_back(std::move(report));
  }

  nlohmann::json summary = nlohmann::json::object();
  for (const auto& [key, v] : values) {
    if (int(v.size()) != o.repeat) continue;  // a TAR@FAR some repeats could not support
    double mean = 0, variance = 0;
    for (double x : v) mean += x / double(v.size());
    for (double x : v) variance += (x - mean) * (x - mean) / double(v.size());
    summary[key] = {{"mean", mean}, {"std", std::sqrt(variance)}};
    std::printf("%-22s %.6f +- %.6f\n", key.c_str(), mean, std::sqrt(variance));
  }
  if (!o.report.empty())
    eval::write_json(o.report, {{"source", source},
                                {"sample", o.sample},
                                {"repeat", o.repeat},
                                {"seed", o.seed},
                                {"folds", folds},
                                {"summary", summary},
                                {"repeats", repeats}});
  std::printf("eval-fr: %s, %d x %lld sampled pairs: accuracy %.3f%% +- %.3f%%\n", source.c_str(),
              o.repeat, (long long)o.sample, 100 * summary["accuracy_mean"]["mean"].get<double>(),
              100 * summary["accuracy_mean"]["std"].get<double>());
}

void run_eval_fr(const EvalFrOptions& o) {
  check_output_folder("--report", o.report);
  check_output_folder("--roc", o.roc);
  check_output_folder("--plot", o.plot);
  if (o.sample > 0) return run_sampled(o);
  eval::PairEmbeddings input;
  int file_folds = 0;
  std::string source = !o.bin.empty() ? o.bin.string() : o.pairs.string();
  if (!o.model.model.empty()) {
    input = model_pairs(o, file_folds);
  } else if (!o.bin.empty()) {
    input = bin_pairs(o);
  } else {
    const eval::PairList pairs = eval::read_pairs(o.pairs);
    file_folds = pairs.folds;
    const fs::path list = o.labels.empty() ? eval::embedding_list_path(o.embeddings) : o.labels;
    input = eval::lookup_pairs(pairs, o.images, eval::read_embeddings(o.embeddings, list), list.string());
  }
  const int folds = o.folds > 0 ? o.folds : file_folds >= 2 ? file_folds : 10;

  const eval::VerificationResult result = eval::evaluate_verification(input, folds);
  std::fputs(eval::verification_summary(result).c_str(), stdout);

  if (!o.roc.empty()) eval::write_roc_csv(o.roc, result.roc);
  if (!o.plot.empty()) eval::write_roc_svg(o.plot, result.roc, "ROC: " + fs::path(source).filename().string(), result.tar_at_far);
  if (!o.report.empty()) {
    nlohmann::json report = eval::verification_json(result);
    report["source"] = source;
    if (o.model.model.empty())
      report["embeddings"] = o.embeddings.string();
    else
      report["model"] = o.model.model;
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
  CLI::Option* embeddings =
      cmd->add_option("--embeddings", options->embeddings,
                      "Precomputed embeddings: a float32 [images x dim] .npy, its rows named by the .txt beside it")
          ->check(CLI::ExistingFile);
  add_inference_flags(cmd, options->model, false, true);
  CLI::Option* model = cmd->get_option("--model");
  embeddings->excludes(model);
  CLI::Option* labels =
      cmd->add_option("--labels", options->labels, "The image path of each embedding row (default: EMB.txt beside EMB.npy)")
          ->check(CLI::ExistingFile)
          ->excludes(model);
  CLI::Option* pairs = cmd->add_option("--pairs", options->pairs,
                                       "Pairs: LFW pairs.txt ('folds n' header, 'name i j' / 'name1 i name2 j') "
                                       "or 'pathA pathB 0|1' lines")
                           ->check(CLI::ExistingFile);
  CLI::Option* bin = cmd->add_option("--bin", options->bin,
                                     "An InsightFace verification .bin (lfw.bin, cfp_fp.bin, ...); embedding row "
                                     "2i and 2i+1 are pair i")
                         ->check(CLI::ExistingFile);
  CLI::Option* sample =
      cmd->add_option("--sample", options->sample,
                      "Instead of a pairs list: evaluate random sets of K pairs (half same-person) among the embedded "
                      "images (the person being each image's folder), or with --model among the images of --pack")
          ->check(CLI::Range(int64_t(4), int64_t(1) << 40));
  cmd->add_option("--repeat", options->repeat, "With --sample: how many random sets (mean +- std reported)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--seed", options->seed, "With --sample: random seed (set r draws from Philox stream r of it)")->capture_default_str();
  pairs->excludes(bin)->excludes(sample);
  bin->excludes(pairs)->excludes(sample)->excludes(labels);
  cmd->add_option("--pack", options->packs,
                                      "With --model --sample: identity-labelled pack prefixes (cuface pack --out) whose "
                                      "images are embedded and sampled")
      ->delimiter(',')
      ->needs(sample)
      ->needs(model);
  sample->excludes(pairs)->excludes(bin);
  cmd->add_option("--images", options->images, "Image root the pair paths are relative to")->capture_default_str();
  cmd->add_option("--folds", options->folds,
                  "Folds of the k-fold protocol (default: the pairs file's folds, else 10)")
      ->check(CLI::Range(2, 1 << 30));
  cmd->add_option("--roc", options->roc, "Write the ROC (cosine threshold, FAR, TAR) as CSV")->excludes(sample);
  cmd->add_option("--plot", options->plot, "Write the ROC as an SVG chart with a log-scale FAR axis")->excludes(sample);
  cmd->add_option("--report", options->report, "Write every figure as JSON");
  cmd->callback([options] {
    if (options->pairs.empty() && options->bin.empty() && options->sample == 0)
      throw CLI::RequiredError("eval-fr needs --pairs FILE, --bin FILE or --sample K");
    if (options->embeddings.empty() == options->model.model.empty())
      throw CLI::RequiredError("eval-fr: --embeddings emb.npy or --model CKPT|RUN_DIR");
    if (options->sample > 0 && !options->model.model.empty() && options->packs.empty())
      throw CLI::RequiredError("eval-fr --model --sample K needs --pack PREFIX (the identity-labelled images to sample)");
    run_eval_fr(*options);
  });
}

}  // namespace cuface::cli
