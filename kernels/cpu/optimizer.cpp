// CPU optimizer updates: one vectorisable loop per tensor; the CUDA twins are in
// kernels/cuda/optimizer.cu.
#include "kernels/optimizer.h"

namespace cuface::cpu {

void sgd_momentum_update(Context&, Tensor& param, const Tensor& grad, Tensor& momentum, float lr,
                         float momentum_coef, float weight_decay, float grad_scale) {
  float* p = param.data<float>();
  const float* g = grad.data<float>();
  float* v = momentum.data<float>();
  const int64_t n = param.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const float step_grad = g[i] * grad_scale + weight_decay * p[i];
    const float velocity = momentum_coef * v[i] + step_grad;
    v[i] = velocity;
    p[i] -= lr * velocity;
  }
}

}  // namespace cuface::cpu
