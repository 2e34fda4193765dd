// What every command that runs a trained model shares: the flags (--model, --align/--detect,
// --input-size, --batch, --workers, --device, --precision, --strict), loading the model onto the
// chosen device, and reporting the images that had no face.
#pragma once
#include <CLI/CLI.hpp>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "engine/context.h"
#include "face/eval/embedder.h"

namespace cuface::cli {

struct InferenceFlags {
  std::string model;
  std::string align;                 // landmark file
  bool detect = false;
  std::string detect_mode = "align";
  float pad = 0.25f;
  std::string landmark_model = kDefaultLandmarkModel;
  int input_size = 0;                // 0: the run's config.json, else 112
  int batch = 32;
  int workers = 2;
  bool flip_test = false;
  bool strict = false;
  std::string device = "auto";
  std::string precision = "fp32";
};

// Adds the flags to `cmd`. `model_required`: --model must be given; `flip_test`: offer --flip-test.
void add_inference_flags(CLI::App* cmd, InferenceFlags& flags, bool model_required, bool flip_test);

// A model loaded on its device with an embedder producing `output`.
struct Inference {
  std::unique_ptr<Context> ctx;
  eval::InferenceModel model;
  std::unique_ptr<eval::Embedder> embedder;
};
Inference start_inference(const InferenceFlags& flags, eval::Output output);

// Prints each skipped image by name to stderr; with --strict the first one is an error instead.
void report_skipped(const eval::EmbedResult& result, const eval::ImageSource& source, bool strict);

// A gender or age head's verdict on each kept image: softmax probabilities of its logits, the most
// likely class, and the classes' names (eval::class_names).
struct Predictions {
  eval::EmbedResult result;                    // rows: the logits
  std::vector<int> label;                      // per kept image
  std::vector<std::vector<double>> probability;  // per kept image, per class
  std::vector<std::string> names;
};
Predictions predict(Inference& inference, Task task, const eval::ImageSource& source, bool strict);

// The cosine similarity at or above which two faces are taken for one person (cuface verify --help
// says why): `given` (--threshold) unless NaN; else the model run's last FR validation threshold
// (valid.csv's best_threshold, a Euclidean distance d of normalised embeddings, as the cosine
// 1 - d^2 / 2); else 0.3. `origin` says which one applies.
double same_person_threshold(double given, const std::filesystem::path& run, std::string& origin);

// An output file flag's folder must exist: said before the work, not when writing after it.
void check_output_folder(const std::string& flag, const std::filesystem::path& file);

// "device cpu (2 threads), fp32" for summaries.
std::string device_description(const Context& ctx);

}  // namespace cuface::cli
