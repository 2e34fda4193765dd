#include "face/eval/inference_model.h"

#include <array>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "engine/error.h"
#include "engine/safetensors.h"
#include "face/train/checkpoint.h"
#include "face/train/config.h"

namespace cuface::eval {

namespace fs = std::filesystem;

namespace {

const Tensor* find(const std::map<std::string, Tensor>& tensors, const std::string& name) {
  auto it = tensors.find(name);
  return it == tensors.end() ? nullptr : &it->second;
}

// The backbone's shape -> the arch name that builds it.
std::string infer_arch(const std::map<std::string, Tensor>& tensors, const std::string& file) {
  const Tensor* stem = find(tensors, "conv1.weight");
  CUFACE_CHECK(stem && stem->rank() == 4,
               "model file '" + file + "' has no ResNet backbone (no 4-d 'conv1.weight'; torchvision names expected)");
  std::array<int, 4> blocks{0, 0, 0, 0};
  const std::regex block(R"(layer([1-4])\.([0-9]+)\..*)");
  for (const auto& [name, tensor] : tensors) {
    std::smatch m;
    if (std::regex_match(name, m, block)) {
      int& count = blocks[size_t(std::stoi(m[1]) - 1)];
      count = std::max(count, std::stoi(m[2]) + 1);
    }
  }
  const bool bottleneck = find(tensors, "layer1.0.conv3.weight") != nullptr;
  const int64_t width = stem->size(0);
  for (const char* arch : {"resnet18", "resnet34", "resnet50", "resnet100", "tiny"}) {
    const ResNetSpec spec = resnet_spec(arch);
    if (spec.bottleneck == bottleneck && spec.blocks == blocks && spec.width == width) return arch;
  }
  std::ostringstream found;
  found << (bottleneck ? "bottleneck" : "basic") << " blocks " << blocks[0] << "," << blocks[1] << "," << blocks[2]
        << "," << blocks[3] << ", stem width " << width;
  throw Error("model file '" + file + "': the backbone (" + found.str() +
              ") is none of resnet18, resnet34, resnet50, resnet100, tiny");
}

// Output widths of a branch's hidden Linear layers: PREFIX.1.weight, PREFIX.3.weight, ...
std::vector<int64_t> hidden_widths(const std::map<std::string, Tensor>& tensors, const std::string& prefix) {
  std::vector<int64_t> widths;
  for (int index = 1;; index += 2) {
    const Tensor* w = find(tensors, prefix + "." + std::to_string(index) + ".weight");
    if (!w || w->rank() != 2) return widths;
    widths.push_back(w->size(0));
  }
}

int64_t rows_of(const std::map<std::string, Tensor>& tensors, const std::string& name) {
  const Tensor* t = find(tensors, name);
  return t && t->rank() >= 1 ? t->size(0) : 0;
}

}  // namespace

fs::path find_checkpoint(const fs::path& model_or_run) {
  if (!fs::is_directory(model_or_run)) {
    CUFACE_CHECK(fs::is_regular_file(model_or_run), "--model: '" + model_or_run.string() + "' does not exist");
    return model_or_run;
  }
  const fs::path latest = model_or_run / "latest";
  std::ifstream in(latest);
  CUFACE_CHECK(in.good(), "--model: '" + model_or_run.string() +
                              "' is a folder without a 'latest' file (not a cuface run folder with a checkpoint)");
  long long step = -1;
  in >> step;
  CUFACE_CHECK(!in.fail() && step >= 0, "--model: '" + latest.string() + "' does not hold a step number");
  const fs::path file = model_or_run / ("model-" + std::to_string(step) + ".safetensors");
  CUFACE_CHECK(fs::is_regular_file(file), "--model: '" + latest.string() + "' names step " + std::to_string(step) +
                                              " but '" + file.string() + "' does not exist");
  return file;
}

FaceModelOptions model_options_from_tensors(const std::map<std::string, Tensor>& tensors, std::string arch,
                                            const std::string& file, bool& backbone_only) {
  FaceModelOptions options;
  options.arch = arch.empty() ? infer_arch(tensors, file) : arch;
  const Tensor* embedding = find(tensors, "embedding.1.weight");
  backbone_only = embedding == nullptr;
  if (embedding) {
    CUFACE_CHECK(embedding->rank() == 2, "model file '" + file + "': embedding.1.weight is not a matrix");
    options.embedding_size = embedding->size(0);
  }
  options.identities = rows_of(tensors, "fr.weight");
  options.gender = find(tensors, "gender.head.weight") != nullptr;
  if (options.gender) options.gender_hidden = hidden_widths(tensors, "gender.hidden");
  options.age_classes = rows_of(tensors, "age.head.weight");
  if (options.age_classes > 0) options.age_hidden = hidden_widths(tensors, "age.hidden");
  return options;
}

InferenceModel load_inference_model(const fs::path& model_or_run, Device device) {
  InferenceModel out;
  out.file = find_checkpoint(model_or_run);
  const fs::path folder = out.file.parent_path().empty() ? fs::path(".") : out.file.parent_path();
  std::string arch;
  out.age_edges = default_age_edges();
  if (fs::is_regular_file(folder / "config.json")) {
    out.run = folder;
    nlohmann::json json;
    try {
      json = nlohmann::json::parse(std::ifstream(folder / "config.json"));
    } catch (const nlohmann::json::exception& e) {
      throw Error("'" + (folder / "config.json").string() + "' is not valid JSON: " + e.what());
    }
    const TrainConfig config = TrainConfig::from_json(json);
    arch = config.arch;
    out.input_size = config.input_size;
    if (!config.age_edges.empty()) out.age_edges = config.age_edges;
  }

  SafetensorsFile loaded = load_safetensors(out.file.string());
  if (auto it = loaded.metadata.find("arch"); it != loaded.metadata.end()) arch = it->second;
  FaceModelOptions options = model_options_from_tensors(loaded.tensors, arch, out.file.string(), out.backbone_only);
  out.model = std::make_unique<FaceModel>(options);

  LoadReport report;
  if (out.backbone_only) {
    // torchvision's classifier is not part of the backbone; everything else must fit it exactly.
    for (const char* name : {"fc.weight", "fc.bias"}) loaded.tensors.erase(name);
    report = load_state(out.model->backbone(), loaded.tensors);
  } else {
    report = load_state(*out.model, loaded.tensors);
  }
  CUFACE_CHECK(report.exact(), "model file '" + out.file.string() + "' does not fit a " + options.arch +
                                   (out.backbone_only ? " backbone" : " FaceModel") + ": " + report.summary());
  out.model->to(device);
  out.model->set_training(false);
  return out;
}

std::vector<std::string> class_names(const InferenceModel& model, Task task) {
  CUFACE_CHECK(task != Task::FR, "class_names: FR has no class names");
  if (task == Task::Gender) return {"male", "female"};  // the packs' labels: 0 male, 1 female
  return age_class_names(model.age_edges, model.model->options().age_classes);
}

std::vector<std::string> age_class_names(const std::vector<int>& e, int64_t classes) {
  std::vector<std::string> names;
  const bool fits = !e.empty() && int64_t(e.size()) + 1 == classes;
  for (int64_t k = 0; k < classes; ++k) {
    if (!fits)
      names.push_back("bin" + std::to_string(k));
    else if (k == classes - 1)
      names.push_back(std::to_string(e.back()) + "+");
    else
      names.push_back(std::to_string(k == 0 ? 0 : e[size_t(k - 1)]) + "-" + std::to_string(e[size_t(k)] - 1));
  }
  return names;
}

}  // namespace cuface::eval
