// A trained model loaded for inference: from a checkpoint file, or a run folder (its `latest`
// checkpoint), or a torchvision-named backbone saved as safetensors.
//
// What to build is read from the file itself, so a bare .safetensors needs nothing beside it:
//   arch            the metadata's "arch" (cuface checkpoints), else config.json beside the file,
//                   else the backbone's tensors: bottleneck blocks (layer1.0.conv3 exists), the
//                   blocks per stage (layerK.I.*) and the stem width (conv1's output channels)
//                   matched against resnet18/34/50/100 and tiny
//   embedding size  embedding.1.weight [size, features]
//   FR head         fr.weight [identities, size]
//   gender / age    gender.head.weight [2, width] / age.head.weight [bins, width], hidden widths from
//                   *.hidden.{1,3,..}.weight
// A file without embedding.* is a backbone alone (torchvision's fc.* is ignored): it gives pooled
// features only. Anything else that does not fit (a missing, extra or misshapen tensor) is one error
// listing the names (train/checkpoint.h: LoadReport).
#pragma once
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "face/model/face_model.h"

namespace cuface::eval {

struct InferenceModel {
  std::unique_ptr<FaceModel> model;  // on the device it was loaded for, in evaluation mode
  std::filesystem::path file;        // the checkpoint read
  std::filesystem::path run;         // its run folder (config.json beside it), empty when none
  bool backbone_only = false;        // no embedding layer: pooled features only
  std::vector<int> age_edges;        // first ages of age bins 1, 2, ... (config.json, else the default)
  int input_size = 112;              // config.json's input_size, else 112
};

// CKPT file -> itself; RUN_DIR -> RUN_DIR/model-<latest step>.safetensors. Errors name the path.
std::filesystem::path find_checkpoint(const std::filesystem::path& model_or_run);

// The FaceModel options a state dict implies (see above); `arch` empty: inferred from the backbone.
// `backbone_only` is set when the file has no embedding layer.
FaceModelOptions model_options_from_tensors(const std::map<std::string, Tensor>& tensors, std::string arch,
                                            const std::string& file, bool& backbone_only);

InferenceModel load_inference_model(const std::filesystem::path& model_or_run, Device device);

// Display names of a classification head's classes: gender "male", "female"; age "0-12", "13-19",
// ..., "60+" from the bin edges (or "bin K" when the edges do not fit the head).
std::vector<std::string> class_names(const InferenceModel& model, Task task);
// The age names alone, for `classes` bins with these lower edges (as train's --age-edges).
std::vector<std::string> age_class_names(const std::vector<int>& edges, int64_t classes);

}  // namespace cuface::eval
