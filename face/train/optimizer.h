// SGD with momentum over a model's trainable parameters, with weight decay chosen per part: none for
// BatchNorm parameters and biases (Parameter::decay), and per-part values for the rest (backbone, FR
// branch, gender branch, age branch), as the original trained each part with its own decay.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "kernels/optimizer.h"
#include "layers/layer.h"

namespace cuface {

// The part a parameter belongs to, by its name: "fr" (embedding.*, fr.*), "gender", "age" or "backbone".
std::string part_of(const std::string& name);

struct WeightDecay {
  double backbone = 5e-4, fr = 5e-4, gender = 5e-4, age = 5e-4;
  // The decay of a parameter named `name` ("layer1.0.conv1.weight", "fr.weight", "gender.head.bias").
  double for_name(const std::string& name) const;
};

class SgdOptimizer {
 public:
  // `parameters`: the trainable parameters to update (a frozen backbone's are simply not passed).
  SgdOptimizer(std::vector<NamedParameter> parameters, double momentum, WeightDecay decay);

  // v = mu v + (g + wd w); w -= lr v; g = 0, for every parameter in one fused call
  // (kernels/optimizer.h): the step consumes the gradients, so the next backward starts from zero.
  void step(Context& ctx, double lr);
  // The same for the parameters whose part (part_of) is in `parts` only; the others keep their
  // values, momentum and (zero) gradients, as PyTorch skips parameters that got no gradient
  // (--multi-mode alternate).
  void step(Context& ctx, double lr, const std::vector<std::string>& parts);
  // step(ctx, lr) with the LR, and a flag that skips the update, read from the device when the update
  // runs (SgdDeviceInputs, kernels/optimizer.h; `device.lr` required): a step replayed from a CUDA graph.
  void step(Context& ctx, const SgdDeviceInputs& device);
  void zero_grad(Context& ctx);  // of the parameters this optimizer updates
  void scale_gradients(Context& ctx, float factor);  // g *= factor (--accumulate's 1/N)

  // Momentum buffers as "momentum.<name>" CPU tensors laid out as export_state lays out the weights
  // they belong to (convolutions OIHW), for the run's state file, and back. `convolutions_ohwi`: the
  // tensors hold convolutions' momentum as the layers keep it (state files from before).
  std::vector<std::pair<std::string, Tensor>> state() const;
  void load_state(const std::map<std::string, Tensor>& tensors, bool convolutions_ohwi);
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    NamedParameter parameter;
    Tensor momentum;
    float weight_decay;
    std::string part;  // part_of(name), looked up once
  };
  // The operands of one update, taken from the parameter as it is now: its value and gradient
  // tensors may have been replaced since (moved to a device, gradients moved into GradBuckets).
  static SgdTensor operands(const Entry& e);
  void update(Context& ctx, double lr, const std::vector<std::string>& parts, const SgdDeviceInputs& device);
  std::vector<Entry> entries_;
  double momentum_;
};

}  // namespace cuface
