#include "face/train/optimizer.h"

#include <algorithm>

#include "kernels/conv.h"
#include "kernels/elementwise.h"
#include "kernels/optimizer.h"

namespace cuface {

static bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

std::string part_of(const std::string& name) {
  if (starts_with(name, "embedding.") || starts_with(name, "fr.")) return "fr";
  if (starts_with(name, "gender.")) return "gender";
  if (starts_with(name, "age.")) return "age";
  return "backbone";
}

double WeightDecay::for_name(const std::string& name) const {
  const std::string part = part_of(name);
  return part == "fr" ? fr : part == "gender" ? gender : part == "age" ? age : backbone;
}

SgdOptimizer::SgdOptimizer(std::vector<NamedParameter> parameters, double momentum, WeightDecay decay)
    : momentum_(momentum) {
  for (NamedParameter& np : parameters) {
    if (!np.parameter->trainable) continue;
    const Tensor& value = np.parameter->value;
    const float wd = np.parameter->decay ? float(decay.for_name(np.name)) : 0.0f;
    entries_.push_back({np, Tensor::zeros(value.shape(), DType::F32, value.device()), wd, part_of(np.name)});
  }
}

SgdTensor SgdOptimizer::operands(const Entry& e) {
  return {e.parameter.parameter->value, e.parameter.parameter->grad, e.momentum, e.weight_decay};
}

static const std::vector<std::string> kAllParts{"backbone", "fr", "gender", "age"};

void SgdOptimizer::step(Context& ctx, double lr) { update(ctx, lr, kAllParts, {}); }

void SgdOptimizer::step(Context& ctx, double lr, const std::vector<std::string>& parts) {
  update(ctx, lr, parts, {});
}

void SgdOptimizer::step(Context& ctx, const SgdDeviceInputs& device) {
  CUFACE_CHECK(device.lr.defined(), "SgdOptimizer::step: no device learning rate given");
  update(ctx, 0.0, kAllParts, device);  // the 0 is not read
}

void SgdOptimizer::update(Context& ctx, double lr, const std::vector<std::string>& parts,
                          const SgdDeviceInputs& device) {
  std::vector<SgdTensor> chosen;
  for (const Entry& e : entries_)
    if (std::find(parts.begin(), parts.end(), e.part) != parts.end()) chosen.push_back(operands(e));
  sgd_momentum_update(ctx, chosen, float(lr), float(momentum_), 1.0f, true, device);
}

void SgdOptimizer::zero_grad(Context& ctx) {
  for (Entry& e : entries_) fill(ctx, e.parameter.parameter->grad, 0.0f);
}

void SgdOptimizer::scale_gradients(Context& ctx, float factor) {
  for (Entry& e : entries_) scale(ctx, factor, e.parameter.parameter->grad);
}

std::vector<std::pair<std::string, Tensor>> SgdOptimizer::state() const {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const Entry& e : entries_) {
    Tensor momentum = e.momentum.to(Device::CPU);
    tensors.emplace_back("momentum." + e.parameter.name,
                         e.parameter.parameter->ohwi ? ohwi_to_oihw(momentum) : momentum);
  }
  return tensors;
}

void SgdOptimizer::load_state(const std::map<std::string, Tensor>& tensors, bool convolutions_ohwi) {
  for (Entry& e : entries_) {
    auto it = tensors.find("momentum." + e.parameter.name);
    CUFACE_CHECK(it != tensors.end(), "optimizer state has no momentum for '" + e.parameter.name + "'");
    const bool convert = e.parameter.parameter->ohwi && !convolutions_ohwi && it->second.rank() == 4;
    const Tensor momentum = convert ? oihw_to_ohwi(it->second) : it->second;
    CUFACE_CHECK(momentum.shape() == e.momentum.shape(),
                 "optimizer state: momentum of '" + e.parameter.name + "' has shape " + it->second.shape().str() +
                     ", the parameter " + e.parameter.parameter->value.shape().str());
    e.momentum.copy_from(momentum);
  }
}

}  // namespace cuface
