// RandomStep: the training step a kernel's random draws belong to, the Philox subsequence of dropout's
// masks (kernels/dropout.h) and of Partial FC's sampling (kernels/partial_fc.h):
//
//   step = number + counter[0]      (counter: an i32 [1] tensor on the kernel's device, when defined)
//
// The counter is read when the kernel runs, not when it is queued. A training step captured as a CUDA
// graph (face/train/step_graph.h) is captured with the numbers its layers count within one step (0 for
// dropout, 1 for Partial FC) and reads the step itself from the counter, which the host writes before
// each replay; an eager step passes its number alone. Both backends add the same way (random_step), so
// CPU and CUDA still draw the same bits.
#pragma once
#include <cstdint>
#include <utility>

#include "engine/tensor.h"

namespace cuface {

struct RandomStep {
  RandomStep(uint64_t number = 0, Tensor counter = {}) : number(number), counter(std::move(counter)) {}
  // The counter's address for a kernel; null without one.
  const int32_t* counter_data() const { return counter.defined() ? counter.data<int32_t>() : nullptr; }

  uint64_t number;
  Tensor counter;
};

// The step a kernel draws with, from RandomStep's two halves (a step counter holds no negative number).
CUFACE_HOST_DEVICE inline uint64_t random_step(uint64_t number, const int32_t* counter) {
  return counter ? number + uint64_t(uint32_t(*counter)) : number;
}

// Rejects a counter that is not i32 [1] on the device of `data` (message starts with `what`).
void check_random_step(const RandomStep& step, const Tensor& data, const char* what);

}  // namespace cuface
