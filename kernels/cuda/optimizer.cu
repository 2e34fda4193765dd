// CUDA optimizer updates: grid-stride loops on the context's stream, memory-bound by design (three
// reads, two writes per element); the CPU twins are in kernels/cpu/optimizer.cpp.
#include "engine/cuda_context.h"
#include "engine/cuda_launch.h"
#include "kernels/optimizer.h"

namespace cuface::cuda {

namespace {
constexpr int kBlock = 256;

__global__ void sgd_momentum_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ v,
                                    int64_t n, float lr, float momentum_coef, float weight_decay, float grad_scale) {
  CUFACE_KERNEL_LOOP(i, n) {
    const float step_grad = g[i] * grad_scale + weight_decay * p[i];
    const float velocity = momentum_coef * v[i] + step_grad;
    v[i] = velocity;
    p[i] -= lr * velocity;
  }
}
}  // namespace

void sgd_momentum_update(Context& ctx, Tensor& param, const Tensor& grad, Tensor& momentum, float lr,
                         float momentum_coef, float weight_decay, float grad_scale) {
  const int64_t n = param.numel();
  if (n == 0) return;
  launch(sgd_momentum_kernel, grid_for(n, kBlock), kBlock, 0, cuda_stream(ctx), param.data<float>(), grad.data<float>(),
         momentum.data<float>(), n, lr, momentum_coef, weight_decay, grad_scale);
}

}  // namespace cuface::cuda
