#include "face/train/step_graph.h"

#include <limits>

#include "kernels/elementwise.h"
#include "kernels/optimizer.h"

namespace cuface {

StepGraph::StepGraph(Context& ctx, FaceModel& model, SgdOptimizer& optimizer)
    : model_(model),
      optimizer_(optimizer),
      step_counter_(Tensor::zeros({1}, DType::I32, ctx.device())),
      lr_(Tensor::zeros({1}, DType::F32, ctx.device())),
      skip_(Tensor::zeros({1}, DType::F32, ctx.device())) {
  CUFACE_CHECK(ctx.is_cuda(), "StepGraph: CUDA graphs need a GPU context");
}

void StepGraph::queue_step(Context& ctx, const Tensor& images, const std::vector<TaskLabels>& tasks, int64_t step,
                           double lr) {
  CUFACE_CHECK(step >= 0 && step <= std::numeric_limits<int32_t>::max(),
               "StepGraph: step " + std::to_string(step) + " does not fit the device's step counter");
  ++steps_;
  Tensor host_step = Tensor::empty({1}, DType::I32), host_lr = Tensor::empty({1}, DType::F32);
  host_step.data<int32_t>()[0] = int32_t(step);
  host_lr.data<float>()[0] = float(lr);
  step_upload_.start(ctx, host_step, step_counter_);
  lr_upload_.start(ctx, host_lr, lr_);

  if (replaying() && matches_capture(images, tasks)) {
    copy_inputs(ctx, images, tasks);
    graph_.replay(ctx);
    return;
  }
  // The first step runs eagerly (cuDNN's searches, the first allocations); the second is captured.
  const bool try_capture = steps_ >= 2 && !replaying() && failure_.empty();
  if (!(try_capture && capture(ctx, images, tasks))) queue_work(ctx, images, tasks);
}

void StepGraph::queue_work(Context& ctx, const Tensor& images, const std::vector<TaskLabels>& tasks) {
  model_.set_step(0, step_counter_);  // the step itself comes from the counter
  model_.queue_train_step(ctx, images, tasks, true, true);
  // Each head's loss finite <=> the trainer's weighted sum of them finite (the weights are finite).
  fill(ctx, skip_, 0.0f);
  for (const TaskLabels& t : tasks) flag_nonfinite(ctx, model_.head(t.task).stats_tensor().slice(0, 1), skip_);
  optimizer_.step(ctx, SgdDeviceInputs{lr_, skip_});
}

// Captures the step and runs this one through it; false (with failure_ set and nothing of the step
// run) when the capture fails.
bool StepGraph::capture(Context& ctx, const Tensor& images, const std::vector<TaskLabels>& tasks) {
  // The inputs are allocated outside the graph: the host writes them before each replay.
  images_ = Tensor::empty(images.shape(), images.dtype(), images.device());
  tasks_ = tasks;
  for (TaskLabels& t : tasks_) t.labels = Tensor::empty(t.labels.shape(), t.labels.dtype(), t.labels.device());
  if (!graph_.capture(ctx, [&] { queue_work(ctx, images_, tasks_); }, &failure_)) {
    failure_ = "the training step could not be captured: " + failure_;
    images_ = Tensor();
    tasks_.clear();
    return false;
  }
  copy_inputs(ctx, images, tasks);
  graph_.replay(ctx);
  return true;
}

bool StepGraph::matches_capture(const Tensor& images, const std::vector<TaskLabels>& tasks) const {
  if (images.shape() != images_.shape() || images.dtype() != images_.dtype() || tasks.size() != tasks_.size())
    return false;
  for (size_t i = 0; i < tasks.size(); ++i)
    if (tasks[i].task != tasks_[i].task || tasks[i].weight != tasks_[i].weight ||
        tasks[i].labels.shape() != tasks_[i].labels.shape())
      return false;
  return true;
}

void StepGraph::copy_inputs(Context& ctx, const Tensor& images, const std::vector<TaskLabels>& tasks) {
  copy(ctx, images, images_);
  for (size_t i = 0; i < tasks.size(); ++i) copy(ctx, tasks[i].labels, tasks_[i].labels);
}

}  // namespace cuface
