// `cuface eval-id`: 1:N identification accuracy on a seeded gallery/probe split of identity-labelled
// images (face/eval/identification.h has the protocol and the figures): closed-set rank-1, rank-5 and
// the CMC curve; open-set TPIR at FPIR 1e-1 and 1e-2, where probes of people not enrolled must be
// rejected. The images are precomputed embeddings (the person being each row's folder), or a folder /
// list embedded by --model (the same), or packs embedded by --model (their identity labels).
#include <CLI/CLI.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <sstream>

#include "engine/atomic_file.h"
#include "face/cli/commands.h"
#include "face/cli/inference.h"
#include "face/cli/progress.h"
#include "face/eval/identification.h"
#include "face/eval/npy.h"
#include "face/eval/pair_sampler.h"
#include "face/eval/report.h"
#include "face/train/validation.h"

namespace cuface::cli {

namespace fs = std::filesystem;

namespace {

const std::vector<double> kFpirTargets{1e-1, 1e-2};

struct EvalIdArgs {
  InferenceFlags model;  // --model and its input flags; --device also places the search
  fs::path embeddings, labels, images, report, cmc;
  std::vector<std::string> packs;
  int gallery_images = 1;
  double unknown_fraction = 0.5;
  uint64_t seed = 1;
  int ranks = 20;
  int64_t block_rows = 0;
};

// The person of each image path: the name of its folder.
std::vector<int> identities_of_folders(const std::vector<std::string>& paths) {
  std::vector<std::string> people;
  for (const std::string& path : paths) people.push_back(fs::path(path).parent_path().filename().string());
  return eval::identity_numbers(people);
}

// The rows to evaluate and each one's identity, with what they came from (for the report).
PackEmbeddings labelled_rows(const EvalIdArgs& a, std::unique_ptr<Context>& ctx, std::string& source) {
  if (!a.embeddings.empty()) {
    const eval::Embeddings e =
        eval::read_embeddings(a.embeddings, a.labels.empty() ? eval::embedding_list_path(a.embeddings) : a.labels);
    ctx = std::make_unique<Context>(parse_device(a.model.device));
    source = a.embeddings.string();
    return {e.matrix, identities_of_folders(e.paths)};
  }
  CUFACE_CHECK(!a.model.model.empty(), "give --embeddings, or --model with --images or --pack");
  CUFACE_CHECK(!a.images.empty() || !a.packs.empty(), "--model needs --images or --pack: the images to evaluate on");
  Inference inference = start_inference(a.model, eval::Output::Embedding);
  PackEmbeddings out;
  const auto start = std::chrono::steady_clock::now();
  if (!a.packs.empty()) {
    ValidationOptions options;
    options.packs = a.packs;
    options.image_size = inference.embedder->input().size;
    options.batch = a.model.batch;
    options.workers = a.model.workers;
    out = embed_pack(*inference.ctx, *inference.model.model, options);
    source = a.packs.front() + (a.packs.size() > 1 ? ",..." : "");
  } else {
    const std::vector<fs::path> files = eval::list_images(a.images);
    const eval::ImageSource images = eval::file_source(files);
    Progress progress("embedding", "images");
    const eval::EmbedResult r =
        inference.embedder->run(images, [&](int64_t done, int64_t total) { progress.update(done, total); });
    progress.finish();
    report_skipped(r.skipped, images.name, a.model.strict);
    CUFACE_CHECK(!r.kept.empty(), "no image of " + a.images.string() + " could be embedded");
    std::vector<std::string> paths;
    for (size_t index : r.kept) paths.push_back(files[index].string());
    out = {r.rows, identities_of_folders(paths)};
    source = a.images.string();
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("embedded %lld images with %s in %.1f s (%.1f images/s, %s)\n", (long long)out.identity.size(),
              inference.model.file.string().c_str(), seconds, double(out.identity.size()) / std::max(seconds, 1e-9),
              device_description(*inference.ctx).c_str());
  source += " (" + inference.model.file.string() + ")";
  ctx = std::move(inference.ctx);
  return out;
}

// Rows `which` of `rows`, in that order.
Tensor gather_rows(const Tensor& rows, const std::vector<int64_t>& which) {
  Tensor out = Tensor::empty({int64_t(which.size()), rows.size(1)});
  for (size_t i = 0; i < which.size(); ++i)
    out.slice(int64_t(i), int64_t(i) + 1).copy_from(rows.slice(which[i], which[i] + 1));
  return out;
}

std::string percent(double fraction) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f%%", 100 * fraction);
  return text;
}

void run_eval_id(const EvalIdArgs& a) {
  check_output_folder("--report", a.report);
  check_output_folder("--cmc", a.cmc);
  std::unique_ptr<Context> ctx;
  std::string source;
  const PackEmbeddings labelled = labelled_rows(a, ctx, source);
  const eval::IdentificationSplit split =
      eval::split_for_identification(labelled.identity, a.gallery_images, a.unknown_fraction, a.seed);
  const int64_t enrolled = int64_t(split.enrolled.size());
  std::printf("split (seed %llu): %lld people enrolled from %zu images (%d each), %zu probes\n",
              (unsigned long long)a.seed, (long long)enrolled, split.gallery_images.size(), a.gallery_images,
              split.probe_images.size());

  const Tensor templates = eval::identity_templates(gather_rows(labelled.matrix, split.gallery_images),
                                                    split.gallery_row, int(enrolled));
  const Tensor probes = eval::normalised_rows(gather_rows(labelled.matrix, split.probe_images));
  eval::SearchOptions options;
  options.block_rows = a.block_rows;
  const auto start = std::chrono::steady_clock::now();
  const eval::Candidates found = eval::search_gallery(
      *ctx, ctx->is_cuda() ? templates.to(Device::CUDA) : templates, probes, a.ranks, options);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const eval::IdentificationResult result = eval::evaluate_identification(found, split.probe_truth, kFpirTargets);

  std::printf("search: %lld probes x %lld templates in %.3f s (%.0f queries/s, %s)\n", (long long)found.probes,
              (long long)enrolled, seconds, double(found.probes) / std::max(seconds, 1e-9),
              device_description(*ctx).c_str());
  std::printf("closed set (%lld mated probes): rank-1 %s, rank-5 %s, rank-%d %s\n", (long long)result.mated,
              percent(result.cmc[0]).c_str(), percent(result.cmc[4]).c_str(), a.ranks,
              percent(result.cmc.back()).c_str());
  nlohmann::json open_set = nlohmann::json::array();
  for (const eval::TarAtFar& point : result.open_set) {
    std::ostringstream target;
    target << point.far_target;
    if (point.supported)
      std::printf("open set (%lld non-mated probes): TPIR %s at FPIR %s (reached %s, threshold cosine %.4f)\n",
                  (long long)result.non_mated, percent(point.tar).c_str(), target.str().c_str(),
                  percent(point.far).c_str(), point.threshold);
    else
      std::printf("open set: TPIR at FPIR %s not supported (%lld non-mated probes allow no false positive)\n",
                  target.str().c_str(), (long long)result.non_mated);
    open_set.push_back({{"fpir", point.far_target},
                        {"supported", point.supported},
                        {"tpir", point.supported ? nlohmann::json(point.tar) : nlohmann::json()},
                        {"fpir_achieved", point.supported ? nlohmann::json(point.far) : nlohmann::json()},
                        {"threshold_cosine", point.supported ? nlohmann::json(point.threshold) : nlohmann::json()}});
  }

  if (!a.cmc.empty()) {
    std::string csv = "rank,identification_rate\n";
    for (size_t r = 0; r < result.cmc.size(); ++r) csv += std::to_string(r + 1) + "," + std::to_string(result.cmc[r]) + "\n";
    write_file_atomically(a.cmc, csv);
  }
  if (!a.report.empty())
    eval::write_json(a.report, {{"source", source},
                                {"seed", a.seed},
                                {"gallery_images", a.gallery_images},
                                {"unknown_fraction", a.unknown_fraction},
                                {"enrolled", enrolled},
                                {"mated_probes", result.mated},
                                {"non_mated_probes", result.non_mated},
                                {"rank1", result.cmc[0]},
                                {"rank5", result.cmc[4]},
                                {"cmc", result.cmc},
                                {"open_set", open_set},
                                {"queries_per_second", double(found.probes) / std::max(seconds, 1e-9)},
                                {"definitions",
                                 {{"cmc", "cmc[r-1]: mated probes whose own identity is among their r best candidates"},
                                  {"tpir", "mated probes whose best candidate is their identity with a score above "
                                           "threshold_cosine / mated probes"},
                                  {"fpir", "non-mated probes whose best score is above threshold_cosine / non-mated "
                                           "probes; the threshold is the (floor(fpir N) + 1)-th highest of those N "
                                           "scores"}}}});
  const eval::TarAtFar& at_1e2 = result.open_set[1];
  std::printf("eval-id: %s, %lld people enrolled: rank-1 %s, rank-5 %s, TPIR@FPIR=1e-2 %s\n", source.c_str(),
              (long long)enrolled, percent(result.cmc[0]).c_str(), percent(result.cmc[4]).c_str(),
              at_1e2.supported ? percent(at_1e2.tar).c_str() : "not supported");
}

}  // namespace

void add_eval_id_command(CLI::App& app) {
  auto args = std::make_shared<EvalIdArgs>();
  CLI::App* cmd = app.add_subcommand(
      "eval-id",
      "1:N identification accuracy on a seeded gallery/probe split of identity-labelled images: closed-set rank-1, "
      "rank-5 and CMC; open-set TPIR at FPIR 1e-1 and 1e-2 (probes of people not enrolled must be rejected)");
  CLI::Option* embeddings =
      cmd->add_option("--embeddings", args->embeddings,
                      "Precomputed embeddings: a float32 [images x dim] .npy, its rows named by the .txt beside it "
                      "(each image's person is its folder)")
          ->check(CLI::ExistingFile);
  add_inference_flags(cmd, args->model, false, true);
  CLI::Option* model = cmd->get_option("--model");
  embeddings->excludes(model);
  cmd->add_option("--labels", args->labels, "The image path of each embedding row (default: EMB.txt beside EMB.npy)")
      ->check(CLI::ExistingFile)
      ->needs(embeddings);
  CLI::Option* images =
      cmd->add_option("--images", args->images,
                      "With --model: a folder (recursively) or list file of images; each image's person is its folder")
          ->needs(model);
  cmd->add_option("--pack", args->packs, "With --model: identity-labelled packs (PREFIX[,PREFIX...]) to embed")
      ->delimiter(',')
      ->needs(model)
      ->excludes(images);
  cmd->add_option("--gallery-images", args->gallery_images,
                  "Images per enrolled person that make its template (people need one more, as a probe, to be "
                  "enrolled)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--unknown-fraction", args->unknown_fraction,
                  "Fraction of the people who could be enrolled that are not, so their images are non-mated probes")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 0.99));
  cmd->add_option("--seed", args->seed, "Seed of the split")->capture_default_str();
  cmd->add_option("--ranks", args->ranks, "Length of the CMC curve (candidates kept per probe)")
      ->capture_default_str()
      ->check(CLI::Range(5, 1000));
  cmd->add_option("--block-rows", args->block_rows,
                  "Gallery rows per search GEMM (0: 4096 on the CPU, 65536 on a GPU); one block of scores is all "
                  "the search holds")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 30));
  cmd->add_option("--report", args->report, "Write every figure as JSON");
  cmd->add_option("--cmc", args->cmc, "Write the CMC curve as CSV (rank,identification_rate)");
  cmd->callback([args] { run_eval_id(*args); });
}

}  // namespace cuface::cli
