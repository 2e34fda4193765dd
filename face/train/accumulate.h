// Gradient accumulation (--accumulate N): one update's batch of B images runs forward and backward
// as N micro-batches of B/N, one after another, their gradients adding up in Parameter::grad (layers
// accumulate), and the sum is then scaled by 1/N. The loss heads average over their micro-batch, so
// the mean of the N micro-batch gradients is the gradient of the whole batch's mean loss: the update
// equals the one a batch of B would give, with the memory of B/N. What differs, as it must:
// BatchNorm normalises each micro-batch with its own statistics (and updates its running statistics
// N times), and heads that skip unlabelled rows average over each micro-batch's labelled rows.
// Micro-batch j of step s draws its dropout masks and Partial FC samples as step s*N + j, so the
// micro-batches get independent masks and a resumed run repeats them.
#pragma once
#include <functional>
#include <vector>

#include "face/model/face_model.h"
#include "face/train/optimizer.h"

namespace cuface {

// What a data-parallel caller does around the micro-batches: arm its gradient buckets just before the
// last micro-batch (its backward completes each gradient, so buckets can start while it runs), and
// wait for them once backward is done, before the gradients are scaled (the buckets are in flight
// until then). Scaling after the average gives the same mean.
struct AccumulateHooks {
  std::function<void()> before_last_micro_batch, after_backward;
};

// Forward and backward of `tasks` on `images` in `micro_batches` slices; the gradients of the
// optimizer's parameters end as the mean over the micro-batches. Returns each task's statistics
// over the whole batch (loss and accuracy weighted by each micro-batch's labelled rows).
std::vector<HeadStats> accumulated_train_step(Context& ctx, FaceModel& model, SgdOptimizer& optimizer,
                                              const Tensor& images, const std::vector<TaskLabels>& tasks,
                                              int micro_batches, bool train_backbone, int64_t step,
                                              const AccumulateHooks& hooks = {});

}  // namespace cuface
