#include "face/cli/inference.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "engine/error.h"
#include "face/cli/progress.h"

namespace cuface::cli {

void add_inference_flags(CLI::App* cmd, InferenceFlags& f, bool model_required, bool flip_test) {
  CLI::Option* model = cmd->add_option(
      "--model", f.model,
      "Checkpoint (.safetensors from cuface train, or a torchvision ResNet state dict) or a run folder (its latest "
      "checkpoint)");
  if (model_required) model->required();
  CLI::Option* align = cmd->add_option(
      "--align", f.align, "Landmark file (LFW landmarks5.txt format, as cuface pack --align): align each face first");
  align->check(CLI::ExistingFile);
  CLI::Option* detect = cmd->add_flag(
      "--detect", f.detect,
      "Find the largest face (dlib HOG detector, 68 points reduced to 5) and align it; images without a face are "
      "reported by name and skipped (--strict: error)");
  align->excludes(detect);
  cmd->add_option("--detect-mode", f.detect_mode,
                  "With --detect: align (onto the ArcFace template) or crop (the box enlarged by --pad, resized)")
      ->check(CLI::IsMember({"align", "crop"}))
      ->needs(detect)
      ->capture_default_str();
  cmd->add_option("--pad", f.pad, "With --detect-mode crop: margin on each side, as a fraction of the box side")
      ->needs(detect)
      ->capture_default_str();
  cmd->add_option("--landmark-model", f.landmark_model, "With --detect: dlib's 68-point shape predictor file")
      ->needs(detect)
      ->capture_default_str();
  cmd->add_option("--input-size", f.input_size,
                  "Network input side (default: the run's config.json, else 112); an image already this size is used "
                  "as is, others are centre-cropped and resized unless aligned")
      ->check(CLI::Range(32, 4096));
  cmd->add_option("--batch", f.batch, "Images per forward pass")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--workers", f.workers, "Decode threads")->capture_default_str()->check(CLI::Range(1, 256));
  if (flip_test)
    cmd->add_flag("--flip-test", f.flip_test,
                  "Each row is the sum of the outputs for the image and its mirror (InsightFace's convention)");
  cmd->add_flag("--strict", f.strict, "An image without a face (--detect) or landmarks (--align) is an error");
  cmd->add_option("--device", f.device, "cpu | cuda | auto")->capture_default_str();
  cmd->add_option("--precision", f.precision, "fp32 | tf32 | bf16 (GPU; the CPU runs fp32)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "tf32", "bf16"}));
}

Inference start_inference(const InferenceFlags& f, eval::Output output) {
  CUFACE_CHECK(!f.model.empty(), "--model is required");
  Inference out;
  out.ctx = std::make_unique<Context>(parse_device(f.device));
  if (out.ctx->is_cuda())
    out.ctx->set_precision(parse_precision(f.precision));
  else if (f.precision != "fp32")
    std::fprintf(stderr, "note: --precision %s applies to GPUs; the CPU runs fp32\n", f.precision.c_str());
  out.model = eval::load_inference_model(f.model, out.ctx->device());
  eval::FaceInputOptions input;
  input.size = f.input_size > 0 ? f.input_size : out.model.input_size;
  input.landmarks = f.align;
  input.detect = f.detect;
  input.crop.mode = f.detect_mode == "crop" ? DetectMode::Crop : DetectMode::Align;
  input.crop.pad = f.pad;
  input.landmark_model = f.landmark_model;
  eval::EmbedOptions options;
  options.output = output;
  options.flip_test = f.flip_test;
  options.batch = f.batch;
  options.workers = f.workers;
  out.embedder = std::make_unique<eval::Embedder>(out.model, *out.ctx, input, options);
  return out;
}

void report_skipped(const eval::EmbedResult& result, const eval::ImageSource& source, bool strict) {
  for (const auto& [index, why] : result.skipped) {
    if (strict) throw Error("'" + source.name(index) + "': " + why + " (--strict)");
    std::fprintf(stderr, "skipped %s: %s\n", source.name(index).c_str(), why.c_str());
  }
}

Predictions predict(Inference& inference, Task task, const eval::ImageSource& source, bool strict) {
  Predictions out;
  Progress progress("classifying", "images");
  out.result = inference.embedder->run(source, [&](int64_t done, int64_t total) { progress.update(done, total); });
  progress.finish();
  report_skipped(out.result, source, strict);
  out.names = eval::class_names(inference.model, task);
  const Tensor& logits = out.result.rows;
  const int64_t classes = logits.rank() == 2 ? logits.size(1) : 0;
  for (int64_t i = 0; i < logits.size(0); ++i) {
    const float* z = logits.data<float>() + i * classes;
    const double top = *std::max_element(z, z + classes);
    std::vector<double> p(static_cast<size_t>(classes));
    double sum = 0;
    for (int64_t c = 0; c < classes; ++c) sum += p[size_t(c)] = std::exp(double(z[c]) - top);
    for (double& v : p) v /= sum;
    out.label.push_back(int(std::max_element(z, z + classes) - z));
    out.probability.push_back(std::move(p));
  }
  return out;
}

namespace {

constexpr double kDefaultCosineThreshold = 0.3;

// The run's last FR best_threshold (valid.csv rows "step,task,figure,value") as a cosine; NAN when none.
double validated_threshold(const std::filesystem::path& run, std::string& source) {
  if (run.empty()) return NAN;
  std::ifstream in(run / "valid.csv");
  double cosine = NAN;
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string step, task, figure, value;
    if (!std::getline(fields, step, ',') || !std::getline(fields, task, ',') || !std::getline(fields, figure, ',') ||
        !std::getline(fields, value) || task != "FR" || figure != "best_threshold")
      continue;
    char* end = nullptr;
    const double distance = std::strtod(value.c_str(), &end);
    if (end == value.c_str() || !std::isfinite(distance)) continue;
    cosine = 1.0 - distance * distance / 2.0;
    char shown[32];
    std::snprintf(shown, sizeof shown, "%.4f", distance);
    source = "the run's validation at step " + step + " (distance " + shown + ")";
  }
  return cosine;
}

}  // namespace

double same_person_threshold(double given, const std::filesystem::path& run, std::string& origin) {
  if (!std::isnan(given)) {
    origin = "--threshold";
    return given;
  }
  const double validated = validated_threshold(run, origin);
  if (!std::isnan(validated)) return validated;
  origin = "the default (no validation figure in the model's run folder; see cuface verify --help)";
  return kDefaultCosineThreshold;
}

void check_output_folder(const std::string& flag, const std::filesystem::path& file) {
  const std::filesystem::path folder = file.parent_path();
  CUFACE_CHECK(file.empty() || folder.empty() || std::filesystem::is_directory(folder),
               flag + " " + file.string() + ": folder " + folder.string() + " does not exist");
}

std::string device_description(const Context& ctx) {
  if (ctx.is_cuda()) return std::string("cuda:") + std::to_string(ctx.gpu_index()) + ", " + precision_name(ctx.precision());
  return "cpu (" + std::to_string(ctx.cpu_threads()) + " threads), fp32";
}

}  // namespace cuface::cli
