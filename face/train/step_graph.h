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
//                  sampling drawn with the step read from the device, kernels/random_step.h), each
//                  head's statistics copied to the host, the backward;
//                  skip = some head's loss is not finite (PyTorch GradScaler's found_inf);
//                  the SGD update with the device LR, which changes nothing when skip is set
//   host, after:   the caller reads the losses (FaceModel::wait_stats); on a non-finite one it stops
//                  with the weights of before the step, as the eager path (check, then update) leaves them.
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
  // rate `lr`, its update included and skipped on the device when a head's loss is not finite, and
  // every head's statistics copy started (for FaceModel::wait_stats).
  void queue_step(Context& ctx, const Tensor& images, const std::vector<TaskLabels>& tasks, int64_t step, double lr);

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
  Tensor skip_;          // f32 [1]: 1 when the step's loss is not finite (written by the step itself)
  PinnedUpload step_upload_, lr_upload_;
  Tensor images_;                  // the graph's inputs
  std::vector<TaskLabels> tasks_;
  std::string failure_;
};

}  // namespace cuface
