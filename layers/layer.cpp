#include "layers/layer.h"

#include "kernels/elementwise.h"

namespace cuface {

std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : name.empty() ? prefix : prefix + "." + name;
}

Parameter& Layer::register_parameter(Parameter& parameter) {
  if (parameter.trainable && !parameter.grad.defined())
    parameter.grad = Tensor::zeros(parameter.value.shape(), DType::F32, parameter.value.device());
  own_parameters_.push_back(&parameter);
  return parameter;
}

void Layer::collect_parameters(const std::string& prefix, std::vector<NamedParameter>& out) {
  for (Parameter* p : own_parameters_) out.push_back({join_name(prefix, p->name), p});
}

std::vector<NamedParameter> Layer::named_parameters() {
  std::vector<NamedParameter> out;
  collect_parameters("", out);
  return out;
}

void Layer::to(Device device) {
  for (NamedParameter& np : named_parameters()) {
    Parameter& p = *np.parameter;
    if (p.value.device() != device) p.value = p.value.to(device);
    if (p.trainable) p.grad = Tensor::zeros(p.value.shape(), DType::F32, device);
  }
}

void Layer::zero_grad(Context& ctx) {
  for (NamedParameter& np : named_parameters())
    if (np.parameter->trainable) fill(ctx, np.parameter->grad, 0.0f);
}

Layer& Sequential::add(std::unique_ptr<Layer> layer, std::string name) {
  if (name.empty()) name = std::to_string(children_.size());
  children_.push_back({std::move(name), std::move(layer)});
  return *children_.back().layer;
}

ProfileWork Layer::work(Pass, const Tensor& in, const Tensor& out) const { return {0, tensor_bytes(in, out)}; }

namespace {
// One child's forward or backward, timed under --profile unless the child is a container (the
// layers inside it are timed instead).
Tensor run_child(Context& ctx, Layer& layer, Pass pass, const Tensor& in) {
  if (!ctx.profiler() || layer.is_container())
    return pass == Pass::Forward ? layer.forward(ctx, in) : layer.backward(ctx, in);
  ProfileScope scope(ctx, layer.type(), pass);
  Tensor out = pass == Pass::Forward ? layer.forward(ctx, in) : layer.backward(ctx, in);
  scope.set_work(layer.work(pass, in, out));
  return out;
}
}  // namespace

Tensor Sequential::forward(Context& ctx, const Tensor& x) {
  Tensor y = x;
  for (Child& child : children_) y = run_child(ctx, *child.layer, Pass::Forward, y);
  return y;
}

Tensor Sequential::backward(Context& ctx, const Tensor& dy) {
  Tensor d = dy;
  for (auto it = children_.rbegin(); it != children_.rend(); ++it) {
    d = run_child(ctx, *it->layer, Pass::Backward, d);
    if (backward_hook_) backward_hook_(*it->layer);
  }
  return d;
}

void Sequential::collect_parameters(const std::string& prefix, std::vector<NamedParameter>& out) {
  Layer::collect_parameters(prefix, out);
  for (Child& child : children_) child.layer->collect_parameters(join_name(prefix, child.name), out);
}

void Sequential::visit(const std::function<void(Layer&)>& f) {
  f(*this);
  for (Child& child : children_) child.layer->visit(f);
}

void Sequential::set_training(bool training) {
  Layer::set_training(training);
  for (Child& child : children_) child.layer->set_training(training);
}

void Sequential::set_frozen(bool frozen) {
  Layer::set_frozen(frozen);
  for (Child& child : children_) child.layer->set_frozen(frozen);
}

}  // namespace cuface
