#include "face/train/step_graph.h"

#include <limits>

#include "kernels/elementwise.h"
#include "kernels/loss_stats.h"
#include "kernels/optimizer.h"

namespace cuface {

StepGraph::StepGraph(Context& ctx, FaceModel& model, SgdOptimizer& optimizer)
    : model_(model),
      optimizer_(optimizer),
      step_counter_(Tensor::zeros({1}, DType::I32, ctx.device())),
      lr_(Tensor::zeros({1}, DType::F32, ctx.device())),
      skip_(Tensor::zeros({1}, DType::F32, ctx.device())),
      stats_(Tensor::zeros({3, kStatCount}, DType::F32, ctx.device())) {
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
  } else {
    // The first step runs eagerly (cuDNN's searches, the first allocations); the second is captured.
    const bool try_capture = steps_ >= 2 && !replaying() && failure_.empty();
    if (!(try_capture && capture(ctx, images, tasks))) queue_work(ctx, images, tasks);
  }
  StatsSlot& slot = slots_[step % 2];
  slot.step = step;
  slot.tasks = tasks.size();
  slot.copy.start(ctx, stats_);
}

std::vector<HeadStats> StepGraph::wait_stats(int64_t step) {
  StatsSlot& slot = slots_[step % 2];
  CUFACE_CHECK(step >= 0 && slot.step == step,
               "StepGraph::wait_stats: step " + std::to_string(step) + " is not one of the last two queued");
  const Tensor& host = slot.copy.wait();
  std::vector<HeadStats> stats;
  for (size_t t = 0; t < slot.tasks; ++t)
    stats.push_back(LossHead::decode_stats(host.slice(int64_t(t), int64_t(t) + 1).reshape({kStatCount})));
  return stats;
}

void StepGraph::queue_work(Context& ctx, const Tensor& images, const std::vector<TaskLabels>& tasks) {
  CUFACE_CHECK(tasks.size() <= size_t(stats_.size(0)), "StepGraph: more tasks than FR, Gender and Age");
  model_.set_step(0, step_counter_);  // the step itself comes from the counter
  model_.queue_train_step(ctx, images, tasks, true, false);
  // Each head's loss finite <=> the trainer's weighted sum of them finite (the weights are finite).
  // Never cleared: the trainer stops at the first non-finite loss, and the step it queued behind that
  // one (it reads the losses one step late) must change nothing either.
  for (size_t t = 0; t < tasks.size(); ++t) {
    const Tensor& head_stats = model_.head(tasks[t].task).stats_tensor();
    flag_nonfinite(ctx, head_stats.slice(0, 1), skip_);
    Tensor row = stats_.slice(int64_t(t), int64_t(t) + 1).reshape({kStatCount});
    copy(ctx, head_stats, row);
  }
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
