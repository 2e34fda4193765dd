// `cuface embed`: one row per image of a trained model's embedding (or the backbone's pooled
// features) as a float32 .npy, with the image of each row in the .txt beside it.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>

#include "engine/error.h"
#include "engine/profiler.h"
#include "face/cli/commands.h"
#include "face/cli/inference.h"
#include "face/cli/progress.h"
#include "face/eval/npy.h"

namespace cuface::cli {

namespace fs = std::filesystem;

namespace {

struct EmbedArgs {
  InferenceFlags flags;
  fs::path images, out;
  std::string features = "embedding";
  bool force = false;
  bool profile = false;
};

// OUT.npy -> OUT.profile.csv
fs::path profile_path(const fs::path& out) { return fs::path(out).replace_extension(".profile.csv"); }

void run_embed(const EmbedArgs& a) {
  check_output_folder("--out", a.out);
  // Said before the work, not after it: an earlier run's embeddings are not replaced by accident.
  for (const fs::path& file : {a.out, eval::embedding_list_path(a.out), a.profile ? profile_path(a.out) : fs::path()})
    CUFACE_CHECK(a.force || file.empty() || !fs::exists(file),
                 "--out " + a.out.string() + ": " + file.string() + " already exists (--force replaces it)");
  const std::vector<fs::path> files = eval::list_images(a.images);
  Inference inference = start_inference(a.flags, eval::parse_features(a.features));
  Profiler profiler;
  if (a.profile) inference.ctx->set_profiler(&profiler);
  const eval::ImageSource source = eval::file_source(files);
  Progress progress("embedding", "images");
  const eval::EmbedResult result =
      inference.embedder->run(source, [&](int64_t done, int64_t total) { progress.update(done, total); });
  progress.finish();
  report_skipped(result.skipped, source.name, a.flags.strict);
  CUFACE_CHECK(!result.kept.empty(), "no image could be embedded (" + std::to_string(result.skipped.size()) + " skipped)");

  eval::Embeddings embeddings{result.rows, {}};
  for (size_t index : result.kept) embeddings.paths.push_back(files[index].string());
  eval::write_embeddings(a.out, embeddings);
  const double seconds = progress.seconds();
  std::printf("embed: %zu images -> %s [%lld x %lld] (+ %s), %zu skipped, %.1f s, %.1f %s/s (%s, %s, %d px%s)\n",
              result.kept.size(), a.out.string().c_str(), (long long)result.rows.size(0), (long long)result.rows.size(1),
              eval::embedding_list_path(a.out).filename().string().c_str(), result.skipped.size(), seconds,
              double(files.size()) / std::max(seconds, 1e-9), a.features == "pooled" ? "images" : "embeddings",
              inference.model.file.string().c_str(), device_description(*inference.ctx).c_str(),
              inference.embedder->input().size, a.flags.flip_test ? ", flip-test" : "");
  if (a.profile) {
    std::printf("%s", profiler.table(*inference.ctx, seconds, "profile: embedding " + std::to_string(files.size()) +
                                                                   " images (time outside the scopes: decoding and "
                                                                   "alignment waits, host work)").c_str());
    profiler.write_csv(*inference.ctx, profile_path(a.out), seconds);
    std::printf("profile written to %s\n", profile_path(a.out).string().c_str());
  }
}

}  // namespace

void add_embed_command(CLI::App& app) {
  auto args = std::make_shared<EmbedArgs>();
  CLI::App* cmd = app.add_subcommand(
      "embed", "Embed images with a trained model: a float32 [images x dim] .npy plus the image of each row in the .txt "
               "beside it");
  add_inference_flags(cmd, args->flags, true, true);
  cmd->add_option("--images", args->images,
                  "A folder (every image under it, recursively, sorted) or a list file (one path per line)")
      ->required();
  cmd->add_option("--out", args->out, "Output .npy (the paths go to the .txt of the same stem); must not exist")
      ->required();
  cmd->add_flag("--force", args->force, "Replace an existing --out (and its .txt)");
  cmd->add_flag("--profile", args->profile,
                "Time each kind of layer (CUDA events on a GPU, the clock on the CPU): a table of time, share, calls "
                "and GFLOP/s or GB/s, printed and written to OUT.profile.csv");
  cmd->add_option("--features", args->features,
                  "embedding (the model's embedding layer) or pooled (the backbone's global-average-pooled features; "
                  "works with a torchvision backbone alone)")
      ->check(CLI::IsMember({"embedding", "pooled"}))
      ->capture_default_str();
  cmd->callback([args] { run_embed(*args); });
}

}  // namespace cuface::cli
