#include "face/train/backbone_graphs.h"

#include "kernels/elementwise.h"

namespace cuface {

void BackboneGraphs::eager_step(Context& ctx, FaceModel& model, const Tensor& images,
                                const std::vector<TaskLabels>& tasks) {
  model.queue_train_step(ctx, images, tasks, true, true);
}

void BackboneGraphs::queue_step(Context& ctx, FaceModel& model, const Tensor& images,
                                const std::vector<TaskLabels>& tasks) {
  ++steps_;
  if (!failure_.empty() || steps_ == 1) return eager_step(ctx, model, images, tasks);
  if (!replaying()) {
    if (!capture(ctx, model, images, tasks)) eager_step(ctx, model, images, tasks);
    return;
  }
  if (images.shape() != images_.shape() || images.dtype() != images_.dtype())
    return eager_step(ctx, model, images, tasks);
  copy(ctx, images, images_);
  forward_.replay(ctx);
  const Tensor grad = model.train_branches(ctx, features_, tasks, true, true);
  copy(ctx, grad, features_grad_);
  backward_.replay(ctx);
}

// Captures both graphs and runs this step through them; false (with failure_ set and nothing of the
// step run) when a capture fails.
bool BackboneGraphs::capture(Context& ctx, FaceModel& model, const Tensor& images,
                             const std::vector<TaskLabels>& tasks) {
  // The fixed inputs are allocated outside the graphs: the host writes them between replays.
  images_ = Tensor::empty(images.shape(), images.dtype(), images.device());
  if (!forward_.capture(ctx, [&] { features_ = model.forward_backbone(ctx, images_, true); }, &failure_)) {
    failure_ = "the backbone's forward could not be captured: " + failure_;
    return false;
  }
  copy(ctx, images, images_);
  forward_.replay(ctx);
  const Tensor grad = model.train_branches(ctx, features_, tasks, true, true);
  features_grad_ = Tensor::empty(grad.shape(), grad.dtype(), grad.device());
  copy(ctx, grad, features_grad_);
  if (!backward_.capture(ctx, [&] { model.backward_backbone(ctx, features_grad_, images_.dtype()); }, &failure_)) {
    // The forward and the branches of this step have run: its backward runs eagerly.
    failure_ = "the backbone's backward could not be captured: " + failure_;
    forward_.reset();
    model.backward_backbone(ctx, features_grad_, images_.dtype());
    return true;
  }
  backward_.replay(ctx);
  return true;
}

}  // namespace cuface
