// `cuface export`: a trained model in a form other tools run or load.
//
//   --format onnx          the inference graph for onnxruntime, TensorRT, OpenVINO, InsightFace's model
//                          zoo (face/export/onnx.h; BatchNorm folded, normalisation inside)
//   --format safetensors   the inference weights under torchvision's names (the backbone loads into
//                          torchvision's ResNet as is; "embedding.*" and, with --heads, "gender.*" and
//                          "age.*" beside it), without the training-only FR classifier "fr.weight"
//
// docs/export.md describes both files.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <memory>

#include "engine/atomic_file.h"
#include "engine/safetensors.h"
#include "face/cli/commands.h"
#include "face/cli/inference.h"
#include "face/eval/inference_model.h"
#include "face/export/onnx.h"
#include "face/loader/upload.h"
#include "face/train/checkpoint.h"

namespace cuface::cli {

namespace fs = std::filesystem;

namespace {

struct ExportArgs {
  fs::path model, out;
  std::string format;
  std::string layout = "nchw";
  int input_size = 0;  // 0: the run's config.json, else 112
  bool heads = false;
  bool force = false;
  CLI::Option* layout_option = nullptr;
};

std::string join(const std::vector<std::string>& items) {
  std::string text;
  for (const std::string& item : items) text += (text.empty() ? "" : ", ") + item;
  return text;
}

bool has_heads(const FaceModel& model) { return model.options().gender || model.options().age_classes > 0; }

// What a user of the exported file needs to know besides the weights.
std::map<std::string, std::string> describe(const eval::InferenceModel& loaded, int input_size) {
  const FaceModelOptions& m = loaded.model->options();
  std::map<std::string, std::string> metadata{
      {"source", loaded.file.string()}, {"arch", m.arch}, {"input_size", std::to_string(input_size)}};
  if (m.gender) metadata["gender_classes"] = join(eval::class_names(loaded, Task::Gender));
  if (m.age_classes > 0) metadata["age_classes"] = join(eval::class_names(loaded, Task::Age));
  return metadata;
}

void run_export(const ExportArgs& a) {
  const auto start = std::chrono::steady_clock::now();
  CUFACE_CHECK(fs::exists(a.model),
               "'" + a.model.string() + "' does not exist (expected a run folder or a checkpoint)");
  CUFACE_CHECK(a.force || !fs::exists(a.out), "--out " + a.out.string() + " already exists (--force replaces it)");
  check_output_folder("--out", a.out);
  const bool onnx_format = a.format == "onnx";
  CUFACE_CHECK(onnx_format || a.layout_option->count() == 0, "--layout applies to --format onnx only");

  std::fprintf(stderr, "export: loading %s\n", a.model.string().c_str());
  const eval::InferenceModel loaded = eval::load_inference_model(a.model, Device::CPU);
  FaceModel& model = *loaded.model;
  CUFACE_CHECK(!loaded.backbone_only, "'" + loaded.file.string() +
                                          "' is a backbone without an embedding layer: nothing to export (torchvision "
                                          "exports its own ResNet)");
  CUFACE_CHECK(!a.heads || has_heads(model),
               "--heads: '" + loaded.file.string() + "' has neither a gender nor an age head");
  const int input_size = a.input_size > 0 ? a.input_size : loaded.input_size;
  std::map<std::string, std::string> metadata = describe(loaded, input_size);

  std::string what;
  if (onnx_format) {
    onnx::ExportOptions options;
    options.input_size = input_size;
    options.layout = onnx::parse_layout(a.layout);
    options.heads = a.heads;
    options.metadata = metadata;
    std::fprintf(stderr, "export: writing the ONNX graph (BatchNorm folded)\n");
    AtomicFile file(a.out);
    const onnx::ExportSummary s = onnx::write_onnx(model, options, file.stream());
    file.commit();
    char text[256];
    std::snprintf(text, sizeof text,
                  "onnx opset %d, %s %s; outputs %s; %d nodes, %d BatchNorms folded, %.2fM parameters, %.1f MB",
                  onnx::kOpset, s.input.c_str(), onnx::layout_name(options.layout), join(s.outputs).c_str(), s.nodes,
                  s.folded_batchnorms, double(s.parameters) / 1e6, double(s.bytes) / 1e6);
    what = text;
  } else {
    // Everything inference needs: the training-only classifier goes, the heads only when asked for.
    std::vector<std::pair<std::string, Tensor>> tensors;
    int64_t parameters = 0;
    for (auto& [name, tensor] : export_state(model)) {
      const bool classifier = name.starts_with("fr.");
      const bool head = name.starts_with("gender.") || name.starts_with("age.");
      if (classifier || (head && !a.heads)) continue;
      parameters += tensor.numel();
      tensors.emplace_back(name, tensor);
    }
    const NormaliseOptions normalise;
    char normalisation[96];
    std::snprintf(normalisation, sizeof normalisation, "(x - %.9g) * %.9g on RGB pixels 0..255 (NHWC in cuface)",
                  double(normalise.mean), double(normalise.scale));
    metadata["input_normalisation"] = normalisation;
    metadata["embedding_size"] = std::to_string(model.options().embedding_size);
    save_safetensors(a.out.string(), tensors, metadata);
    char text[160];
    std::snprintf(text, sizeof text, "safetensors, %zu tensors (torchvision names), %.2fM values, %.1f MB, %d px",
                  tensors.size(), double(parameters) / 1e6, double(fs::file_size(a.out)) / 1e6, input_size);
    what = text;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("export: %s -> %s (%s, %.2f s)\n", loaded.file.string().c_str(), a.out.string().c_str(), what.c_str(),
              seconds);
}

}  // namespace

void add_export_command(CLI::App& app) {
  auto args = std::make_shared<ExportArgs>();
  CLI::App* cmd = app.add_subcommand(
      "export", "Export a trained model: an ONNX inference graph (onnxruntime, TensorRT, InsightFace) or its "
                "inference weights as safetensors with torchvision names; see docs/export.md");
  cmd->add_option("MODEL", args->model, "A run folder (its latest checkpoint) or a checkpoint .safetensors")
      ->required();
  cmd->add_option("--format", args->format,
                  "onnx (opset 13: raw RGB pixels in, normalisation and folded BatchNorms inside, dynamic batch; "
                  "outputs embedding [, gender, age logits]) or safetensors (the weights, unfolded)")
      ->required()
      ->check(CLI::IsMember({"onnx", "safetensors"}));
  cmd->add_option("--out", args->out, "Output file (not replaced unless --force)")->required();
  cmd->add_flag("--heads", args->heads, "Also the gender and age heads (ONNX: their logits as extra outputs)");
  args->layout_option = cmd->add_option("--layout", args->layout,
                                        "ONNX input layout: nchw [batch, 3, S, S] or nhwc [batch, S, S, 3]")
                            ->check(CLI::IsMember({"nchw", "nhwc"}))
                            ->capture_default_str();
  cmd->add_option("--input-size", args->input_size,
                  "Input side S: the ONNX graph's, recorded in the metadata of both (default: the run's config.json, "
                  "else 112)")
      ->check(CLI::Range(32, 4096));
  cmd->add_flag("--force", args->force, "Replace an existing --out");
  cmd->callback([args] { run_export(*args); });
}

}  // namespace cuface::cli
