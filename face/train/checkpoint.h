// Model weights in safetensors files, named and laid out as PyTorch does: a cuface checkpoint's
// backbone is a torchvision ResNet state_dict (convolution weights OIHW, BN buffers included), and a
// torchvision state_dict saved as safetensors loads into the backbone as is.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "layers/layer.h"

namespace cuface {

// Every parameter and buffer of `model` as CPU tensors under their dotted names, convolution weights
// converted to PyTorch's OIHW.
std::vector<std::pair<std::string, Tensor>> export_state(Layer& model);
void save_model(const std::string& path, Layer& model, const std::map<std::string, std::string>& metadata = {});

// What a load matched. Tensors are copied into the model only where name and shape agree.
struct LoadReport {
  std::vector<std::string> matched;     // copied
  std::vector<std::string> missing;     // in the model, not in the file
  std::vector<std::string> unexpected;  // in the file, not in the model
  std::vector<std::string> mismatched;  // in both, shapes or dtypes differ ("name: file [..] vs model [..]")
  bool exact() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  std::string summary() const;          // "matched 320, missing 2 (...), unexpected 2 (fc.weight, fc.bias)"
};

LoadReport load_state(Layer& model, const std::map<std::string, Tensor>& tensors);
// Loads a file; unless `partial`, anything but an exact match is an error listing the names.
LoadReport load_model(const std::string& path, Layer& model, bool partial = false);

}  // namespace cuface
