// `cuface gallery`: enrol people for identification (`cuface identify`). Every image under --images is
// embedded by the model; its identity is the name of the folder it is in (LFW's Name/Name_0001.jpg
// layout); each identity's template is the normalised mean of its images' normalised embeddings. The
// gallery's format is in face/eval/gallery.h. --add extends a gallery: images already enrolled (the
// same path) are left out, new ones join their identity or start a new one, templates are recomputed.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>
#include <set>

#include "face/cli/commands.h"
#include "face/cli/inference.h"
#include "face/cli/progress.h"
#include "face/eval/gallery.h"

namespace cuface::cli {

namespace fs = std::filesystem;

namespace {

struct GalleryArgs {
  InferenceFlags flags;
  fs::path images, out;
  bool add = false;
};

void run_gallery(const GalleryArgs& a) {
  // Everything that can be said about the output is said before any image is embedded.
  eval::Gallery gallery;
  if (a.add) {
    gallery = eval::read_gallery(a.out);
  } else {
    CUFACE_CHECK(!fs::exists(a.out), "--out " + a.out.string() + " already exists (--add extends it)");
    check_output_folder("--out", a.out);
  }
  const std::set<std::string> enrolled(gallery.image_paths.begin(), gallery.image_paths.end());
  const std::vector<fs::path> listed = eval::list_images(a.images);
  std::vector<fs::path> files;
  for (const fs::path& file : listed)
    if (!enrolled.contains(file.string())) files.push_back(file);
  const size_t already = listed.size() - files.size();

  Inference inference = start_inference(a.flags, eval::Output::Embedding);
  const std::string fingerprint = eval::model_fingerprint(inference.model.file);
  const int64_t embedding_size = inference.model.model->options().embedding_size;
  if (a.add) {
    eval::check_gallery_model(gallery, a.out, embedding_size, inference.model.file, fingerprint);
  } else {
    gallery.model_file = fs::absolute(inference.model.file).lexically_normal().string();
    gallery.model_fingerprint = fingerprint;
  }
  const size_t people_before = gallery.names.size();

  eval::EmbedResult result;
  const eval::ImageSource source = eval::file_source(files);
  Progress progress("enrolling", "images");
  if (!files.empty()) {
    result = inference.embedder->run(source, [&](int64_t done, int64_t total) { progress.update(done, total); });
    progress.finish();
    report_skipped(result.skipped, source.name, a.flags.strict);
    CUFACE_CHECK(!result.kept.empty(), "no image could be embedded (" + std::to_string(result.skipped.size()) + " skipped)");
  } else {
    result.rows = Tensor::empty({0, embedding_size});
  }
  std::vector<std::string> names, paths;
  for (size_t index : result.kept) {
    names.push_back(files[index].parent_path().filename().string());
    paths.push_back(files[index].string());
  }
  eval::add_images(gallery, result.rows, names, paths);
  eval::write_gallery(a.out, gallery, command_line());

  std::printf("gallery: %zu images enrolled (%zu new people), %zu skipped%s -> %s: %zu people, %zu images, %lld-d "
              "templates (%lld bytes each), %.1f s (%s, %s)\n",
              result.kept.size(), gallery.names.size() - people_before, result.skipped.size(),
              already > 0 ? (", " + std::to_string(already) + " already enrolled").c_str() : "", a.out.string().c_str(),
              gallery.names.size(), gallery.image_paths.size(), (long long)embedding_size,
              (long long)(4 * embedding_size), progress.seconds(), inference.model.file.string().c_str(),
              device_description(*inference.ctx).c_str());
}

}  // namespace

void add_gallery_command(CLI::App& app) {
  auto args = std::make_shared<GalleryArgs>();
  CLI::App* cmd = app.add_subcommand(
      "gallery", "Enrol people for cuface identify: one template per identity (the normalised mean of its images' "
                 "embeddings; the identity is each image's folder name), the per-image rows kept");
  add_inference_flags(cmd, args->flags, true, true);
  cmd->add_option("--images", args->images,
                  "A folder (every image under it, recursively) or a list file (one path per line); each image's "
                  "identity is the name of its folder")
      ->required();
  cmd->add_option("--out", args->out, "The gallery folder (format: docs/evaluation.md)")->required();
  cmd->add_flag("--add", args->add,
                "Extend the existing gallery --out: new images join their identity or start a new one; images "
                "already enrolled are left out; the model must be the gallery's");
  cmd->callback([args] { run_gallery(*args); });
}

}  // namespace cuface::cli
