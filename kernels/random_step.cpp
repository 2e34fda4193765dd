#include "kernels/random_step.h"

namespace cuface {

void check_random_step(const RandomStep& step, const Tensor& data, const char* what) {
  if (!step.counter.defined()) return;
  CUFACE_CHECK(step.counter.dtype() == DType::I32 && step.counter.numel() == 1 &&
                   step.counter.device() == data.device(),
               std::string(what) + ": the step counter must be i32 [1] on " + device_name(data.device()) + ", got " +
                   step.counter.str());
}

}  // namespace cuface
