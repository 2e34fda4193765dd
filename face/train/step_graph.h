// The whole training step replayed from one CUDA graph (`cuface train --cuda-graph auto`).
//
// A ResNet-50 step launches ~900 kernels; queued one by one from the host, each costs a launch, and
// small batches leave the GPU waiting for the host. After one eager step (cuDNN's algorithm searches,
// the allocator's first blocks), the second step is captured as a CUDA graph (engine/cuda_graph.h) and
// every step replays it as one launch:
//
//   host, before:  the batch and labels copied into the captured input tensors; the step number and
//                  the learning rate (the host still runs the LR schedule) uploaded to device scalars
//   the graph:     the backbone's forward, the task branches and heads (dropout masks and Partial FC's
//                  sampling drawn with the step read from the device, kernels/random_step.h), the
//                  backward; each head's statistics copied into the step's statistics tensor;
//                  skip |= some head's loss is not finite (PyTorch GradScaler's found_inf, but sticky);
//                  the SGD update with the device LR, which changes nothing once skip is set
//   host, after:   the statistics copied to one of two pinned slots (outside the graph), read with
//                  wait_stats() one step late: the host queues step k+1 before it waits for step k's
//                  losses, so the GPU never idles between steps. On a non-finite loss the trainer stops
//                  with the weights of before that step: the skip flag stays set, so the step queued
//                  behind it changes nothing either, as the eager path (check, then update) leaves them.
//
// A step that cannot replay runs the same work eagerly, update included: the first step, a step whose
// batch or tasks differ from the captured ones (shape, dtype, task list, weights), and every step after
// a failed capture (a call that cannot be captured; the reason is kept).
#pragma once
#include <string>
#include <vector>

#include "engine/cuda_graph.h"
#include "engine/host_copy.h"
#include "face/model/face_model.h"
#include "face/train/optimizer.h"

namespace cuface {

class StepGraph {
 public:
  // `optimizer` updates all of `model`'s trained parameters; both outlive this object. On a GPU context.
  StepGraph(Context& ctx, FaceModel& model, SgdOptimizer& optimizer);

  // Queues training step number `step` on `images` and `tasks` (the backbone trained) with learning
  // rate `lr`, its update included and skipped on the device when a head's loss, of this step or an
  // earlier one, was not finite, and its statistics' copy to the host started.
  void queue_step(Context& ctx, const Tensor& images, const std::vector<TaskLabels>& tasks, int64_t step, double lr);
  // Each task's statistics of step `step`, one of the last two queued (waits for that step only).
  std::vector<HeadStats> wait_stats(int64_t step);

  // Whether the step was captured and replays (false before the second step and after a failure).
  bool replaying() const { return graph_.captured(); }
  // Why every step runs eagerly ("" while the graph is used or still to be captured).
  const std::string& failure() const { return failure_; }

 private:
  // The step's work on the device scalars: what is captured, and what an eager step runs.
  void queue_work(Context& ctx, const Tensor& images, const std::vector<TaskLabels>& tasks);
  bool capture(Context& ctx, const Tensor& images, const std::vector<TaskLabels>& tasks);
  bool matches_capture(const Tensor& images, const std::vector<TaskLabels>& tasks) const;
  void copy_inputs(Context& ctx, const Tensor& images, const std::vector<TaskLabels>& tasks);

  FaceModel& model_;
  SgdOptimizer& optimizer_;
  int64_t steps_ = 0;
  CudaGraph graph_;
  Tensor step_counter_;  // i32 [1]: the step number, added to the layers' (kernels/random_step.h)
  Tensor lr_;            // f32 [1]: the learning rate
  Tensor skip_;          // f32 [1]: 1 from the first step whose loss is not finite on
  Tensor stats_;         // f32 [3, 4]: the step's statistics, a row per task (LossHead::stats_tensor)
  PinnedUpload step_upload_, lr_upload_;
  // The statistics of the last two queued steps on their way to the host: a step's copy goes to the
  // slot of its parity, so queueing step k+1 leaves step k's copy alone.
  struct StatsSlot {
    int64_t step = -1;
    size_t tasks = 0;
    HostCopy copy;
  } slots_[2];
  Tensor images_;                  // the graph's inputs
  std::vector<TaskLabels> tasks_;
  std::string failure_;
};

}  // namespace cuface
