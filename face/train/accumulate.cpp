#include "face/train/accumulate.h"

#include <algorithm>

#include "engine/error.h"

namespace cuface {

namespace {

// Adds micro-batch statistics `part` into the running total (sums weighted by labelled rows).
void add_stats(HeadStats& total, const HeadStats& part) {
  if (part.labelled == 0) return;  // its loss is undefined
  const double rows = double(part.labelled);
  total.loss += float(part.loss * rows);
  total.accuracy += float(part.accuracy * rows);
  total.mean_target += float(part.mean_target * rows);
  total.labelled += part.labelled;
}

}  // namespace

std::vector<HeadStats> accumulated_train_step(Context& ctx, FaceModel& model, SgdOptimizer& optimizer,
                                              const Tensor& images, const std::vector<TaskLabels>& tasks,
                                              int micro_batches, bool train_backbone, int64_t step,
                                              const AccumulateHooks& hooks) {
  const int64_t batch = images.size(0);
  CUFACE_CHECK(micro_batches >= 1 && batch % micro_batches == 0,
               "--accumulate " + std::to_string(micro_batches) + " does not divide the batch of " +
                   std::to_string(batch));
  auto call = [](const std::function<void()>& hook) {
    if (hook) hook();
  };
  if (micro_batches == 1) {
    model.set_step(uint64_t(step));
    call(hooks.before_last_micro_batch);
    std::vector<HeadStats> stats = model.train_step(ctx, images, tasks, train_backbone, true);
    call(hooks.after_backward);
    return stats;
  }
  const int64_t rows = batch / micro_batches;
  std::vector<HeadStats> total(tasks.size());
  for (int j = 0; j < micro_batches; ++j) {
    std::vector<TaskLabels> slice = tasks;
    for (TaskLabels& t : slice) t.labels = t.labels.slice(j * rows, (j + 1) * rows);
    model.set_step(uint64_t(step) * uint64_t(micro_batches) + uint64_t(j));
    if (j == micro_batches - 1) call(hooks.before_last_micro_batch);
    const Tensor micro = images.slice(j * rows, (j + 1) * rows);
    std::vector<HeadStats> part = model.train_step(ctx, micro, slice, train_backbone, true);
    for (size_t t = 0; t < part.size(); ++t) add_stats(total[t], part[t]);
  }
  call(hooks.after_backward);
  optimizer.scale_gradients(ctx, 1.0f / float(micro_batches));
  for (HeadStats& s : total) {
    const double rows_labelled = double(std::max<int64_t>(s.labelled, 1));
    s.loss = float(s.loss / rows_labelled);
    s.accuracy = float(s.accuracy / rows_labelled);
    s.mean_target = float(s.mean_target / rows_labelled);
  }
  return total;
}

}  // namespace cuface
