// Layer: the unit of the network. Each layer owns its parameters (value + gradient), keeps only what
// its backward needs, and has an explicit forward and backward:
//
//   y  = layer.forward(ctx, x)     // in training mode, saves what backward needs
//   dx = layer.backward(ctx, dy)   // adds dL/dparams into each Parameter::grad, returns dL/dx
//
// Gradients accumulate (+=) so that several micro-batches can be summed before one update; the
// trainer zeroes them after each update. A frozen layer computes dx only (no parameter gradients).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/context.h"
#include "engine/profiler.h"
#include "engine/tensor.h"

namespace cuface {

struct Parameter {
  std::string name;      // local name as PyTorch spells it: "weight", "bias", "running_mean", ...
  Tensor value;          // fp32 master copy
  Tensor grad;           // same shape as value; undefined for buffers
  bool trainable = true; // false for buffers (BN running statistics, counters)
  bool decay = true;     // weight decay applies (not to BN parameters and biases)
  // Stored as [out, kh, kw, in] (convolution weights, NHWC); PyTorch checkpoints hold [out, in, kh, kw].
  // Checkpoint code converts with oihw_to_ohwi / ohwi_to_oihw from kernels/conv.h.
  bool ohwi = false;
};

// A parameter with its full dotted name inside the model ("layer1.0.conv1.weight").
struct NamedParameter {
  std::string name;
  Parameter* parameter;
};

class Layer {
 public:
  Layer() = default;
  Layer(const Layer&) = delete;  // parameters are registered by address
  Layer& operator=(const Layer&) = delete;
  virtual ~Layer() = default;
  virtual const char* type() const = 0;

  virtual Tensor forward(Context& ctx, const Tensor& x) = 0;
  virtual Tensor backward(Context& ctx, const Tensor& dy) = 0;

  // This layer's own parameters and those of its children, with dotted names under `prefix`.
  virtual void collect_parameters(const std::string& prefix, std::vector<NamedParameter>& out);
  std::vector<NamedParameter> named_parameters();

  // Training mode uses batch statistics and dropout; evaluation mode does not. Recursive.
  virtual void set_training(bool training) { training_ = training; }
  bool training() const { return training_; }
  // A frozen layer's backward skips its parameter gradients. Recursive.
  virtual void set_frozen(bool frozen) { frozen_ = frozen; }
  bool frozen() const { return frozen_; }

  // Calls f on this layer and, recursively, on every layer inside it (containers override).
  virtual void visit(const std::function<void(Layer&)>& f) { f(*this); }
  // Containers (layers made of layers) are not timed by --profile: the layers inside them are.
  virtual bool is_container() const { return false; }
  // What one forward (x in, y out) or backward (dy in, dx out) call does, for --profile's rates:
  // by default the bytes passed in and out; convolutions and GEMMs count their operations.
  virtual ProfileWork work(Pass pass, const Tensor& in, const Tensor& out) const;

  // Moves every parameter (and gradient) to `device`; gradients are zeroed.
  void to(Device device);
  // Zeroes every parameter gradient.
  void zero_grad(Context& ctx);

 protected:
  // Parameters held directly by this layer (children report theirs through collect_parameters).
  std::vector<Parameter*> own_parameters_;
  // Registers a parameter created by a subclass constructor; gradients are allocated for trainable ones.
  Parameter& register_parameter(Parameter& parameter);

  bool training_ = true;
  bool frozen_ = false;
};

// Children run in order; each child is named by its index or an explicit name (torchvision style).
class Sequential : public Layer {
 public:
  const char* type() const override { return "Sequential"; }
  bool is_container() const override { return true; }
  Layer& add(std::unique_ptr<Layer> layer, std::string name = "");
  template <class L, class... Args>
  L& emplace(std::string name, Args&&... args) {
    return static_cast<L&>(add(std::make_unique<L>(std::forward<Args>(args)...), std::move(name)));
  }
  size_t size() const { return children_.size(); }
  Layer& operator[](size_t i) { return *children_[i].layer; }
  const std::string& child_name(size_t i) const { return children_[i].name; }

  Tensor forward(Context& ctx, const Tensor& x) override;
  Tensor backward(Context& ctx, const Tensor& dy) override;
  void collect_parameters(const std::string& prefix, std::vector<NamedParameter>& out) override;
  void set_training(bool training) override;
  void set_frozen(bool frozen) override;
  void visit(const std::function<void(Layer&)>& f) override;
  // Called after each child's backward, when that child's parameter gradients are final: lets
  // data-parallel training start averaging them while backward goes on with earlier children.
  void set_backward_hook(std::function<void(Layer& child)> hook) { backward_hook_ = std::move(hook); }

 private:
  std::function<void(Layer&)> backward_hook_;
  struct Child {
    std::string name;
    std::unique_ptr<Layer> layer;
  };
  std::vector<Child> children_;
};

// "a" + "b" -> "a.b"; "" + "b" -> "b".
std::string join_name(const std::string& prefix, const std::string& name);

}  // namespace cuface
