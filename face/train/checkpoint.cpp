#include "face/train/checkpoint.h"

#include <sstream>

#include "engine/safetensors.h"
#include "kernels/conv.h"

namespace cuface {

std::vector<std::pair<std::string, Tensor>> export_state(Layer& model) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (NamedParameter& np : model.named_parameters()) {
    Tensor value = np.parameter->value.to(Device::CPU);
    if (np.parameter->ohwi) value = ohwi_to_oihw(value);
    tensors.emplace_back(np.name, value);
  }
  return tensors;
}

void save_model(const std::string& path, Layer& model, const std::map<std::string, std::string>& metadata) {
  save_safetensors(path, export_state(model), metadata);
}

static std::string list(const std::vector<std::string>& names, size_t most = 8) {
  std::ostringstream out;
  for (size_t i = 0; i < names.size() && i < most; ++i) out << (i ? ", " : "") << names[i];
  if (names.size() > most) out << ", ... (" << names.size() - most << " more)";
  return out.str();
}

std::string LoadReport::summary() const {
  std::ostringstream out;
  out << "matched " << matched.size();
  if (!missing.empty()) out << "; missing " << missing.size() << " (" << list(missing) << ")";
  if (!unexpected.empty()) out << "; unexpected " << unexpected.size() << " (" << list(unexpected) << ")";
  if (!mismatched.empty()) out << "; mismatched " << mismatched.size() << " (" << list(mismatched) << ")";
  return out.str();
}

LoadReport load_state(Layer& model, const std::map<std::string, Tensor>& tensors) {
  LoadReport report;
  std::map<std::string, bool> used;
  for (NamedParameter& np : model.named_parameters()) {
    Parameter& p = *np.parameter;
    auto it = tensors.find(np.name);
    if (it == tensors.end()) {
      report.missing.push_back(np.name);
      continue;
    }
    used[np.name] = true;
    Tensor value = p.ohwi && it->second.rank() == 4 ? oihw_to_ohwi(it->second) : it->second;
    if (!(value.shape() == p.value.shape()) || value.dtype() != p.value.dtype()) {
      report.mismatched.push_back(np.name + ": file " + std::string(dtype_name(it->second.dtype())) +
                                  it->second.shape().str() + " vs model " + p.value.str());
      continue;
    }
    p.value.copy_from(value);
    report.matched.push_back(np.name);
  }
  for (const auto& [name, tensor] : tensors)
    if (!used.count(name)) report.unexpected.push_back(name);
  return report;
}

LoadReport load_model(const std::string& path, Layer& model, bool partial) {
  LoadReport report = load_state(model, load_safetensors(path).tensors);
  CUFACE_CHECK(partial || report.exact(), "model file '" + path + "' does not fit the model: " + report.summary());
  CUFACE_CHECK(!report.matched.empty(), "model file '" + path + "' has no tensor this model uses: " + report.summary());
  return report;
}

}  // namespace cuface
