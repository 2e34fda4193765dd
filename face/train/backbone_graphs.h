// The training step with the backbone replayed from CUDA graphs (`cuface train --cuda-graph auto`).
//
// A ResNet-50 step launches ~900 kernels, almost all of them in the backbone's forward and backward;
// queued one by one from the host, each costs a launch, and small batches leave the GPU waiting for
// the host. After one eager step (cuDNN's algorithm searches, the allocator's first blocks), the
// backbone's forward and its backward are each captured once as a CUDA graph (engine/cuda_graph.h)
// and replayed as one launch each:
//
//   copy the batch into the captured input     (the graphs read fixed addresses)
//   replay the forward graph                   -> pooled features, in a fixed tensor
//   the task branches and heads, eagerly       (dropout masks and Partial FC's sampling draw per step,
//                                               so they stay outside the graph; a dozen launches)
//   copy their gradient into the captured one
//   replay the backward graph                  -> the backbone's gradients, where the eager step puts them
//
// and the optimizer runs after it as before (the NaN check between them stays exact). A step whose
// batch differs from the captured one (shape or dtype) runs eagerly. When the capture fails (a call
// that cannot be captured), the reason is kept and every step runs eagerly.
#pragma once
#include <string>
#include <vector>

#include "engine/cuda_graph.h"
#include "face/model/face_model.h"

namespace cuface {

class BackboneGraphs {
 public:
  // Queues one training step of `model` on `images` and `tasks` (with every head's statistics copy
  // started, for FaceModel::wait_stats), as FaceModel::queue_train_step does.
  void queue_step(Context& ctx, FaceModel& model, const Tensor& images, const std::vector<TaskLabels>& tasks);

  // Whether the graphs were captured and replay (false before the second step and after a failure).
  bool replaying() const { return backward_.captured(); }
  // Why the step runs eagerly for good ("" while graphs are used or still to be captured).
  const std::string& failure() const { return failure_; }

 private:
  bool capture(Context& ctx, FaceModel& model, const Tensor& images, const std::vector<TaskLabels>& tasks);
  void eager_step(Context& ctx, FaceModel& model, const Tensor& images, const std::vector<TaskLabels>& tasks);

  int64_t steps_ = 0;
  CudaGraph forward_, backward_;
  Tensor images_;         // the forward graph's input
  Tensor features_;       // its output
  Tensor features_grad_;  // the backward graph's input
  std::string failure_;
};

}  // namespace cuface
