// CPU optimizer updates: one OpenMP region for the whole list, each tensor's elements split over the
// threads by one vectorisable loop; the CUDA twins are in kernels/cuda/optimizer.cu.
#include <cmath>

#include "kernels/optimizer.h"

namespace cuface::cpu {

void sgd_momentum_update(Context&, const std::vector<SgdTensor>& tensors, float lr_value, float momentum_coef,
                         float grad_scale, bool zero_grad, const SgdDeviceInputs& device) {
  const bool skipped = device.skip.defined() && device.skip.data<float>()[0] != 0.0f;
  if (skipped && !zero_grad) return;
  const float lr = device.lr.defined() ? device.lr.data<float>()[0] : lr_value;
  int64_t total = 0;
  for (const SgdTensor& t : tensors) total += t.param.numel();
#pragma omp parallel if (total > 65536)
  for (const SgdTensor& t : tensors) {
    float* p = t.param.data<float>();
    float* g = t.grad.data<float>();
    float* v = t.momentum.data<float>();
    const float weight_decay = t.weight_decay;
    const int64_t n = t.param.numel();
    // nowait: tensors are independent, so a thread done with its share of one starts the next.
#pragma omp for schedule(static) nowait
    for (int64_t i = 0; i < n; ++i) {
      if (!skipped) {
        const float step_grad = g[i] * grad_scale + weight_decay * p[i];
        const float velocity = momentum_coef * v[i] + step_grad;
        v[i] = velocity;
        p[i] -= lr * velocity;
      }
      if (zero_grad) g[i] = 0.0f;
    }
  }
}

void flag_nonfinite(Context&, const Tensor& x, Tensor& flag) {
  const float* v = x.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i)
    if (!std::isfinite(v[i])) flag.data<float>()[0] = 1.0f;
}

}  // namespace cuface::cpu
