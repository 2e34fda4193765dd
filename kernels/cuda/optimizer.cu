// CUDA optimizer updates: memory-bound by design (three reads, two or three writes per element). The
// tensor list is cut into groups; a group's pointers travel as the kernel's arguments (about 2 KB,
// under the 4 KB parameter limit), and block row blockIdx.y of the grid walks tensor blockIdx.y of
// its group. The CPU twin is in kernels/cpu/optimizer.cpp.
#include <algorithm>

#include "engine/cuda_context.h"
#include "engine/cuda_launch.h"
#include "kernels/optimizer.h"

namespace cuface::cuda {

namespace {
constexpr int kBlock = 256;
constexpr int kTensorsPerLaunch = 48;
constexpr int64_t kMaxBlocksPerTensor = 1024;  // larger tensors are walked by grid-stride loops

struct SgdGroup {
  float* param[kTensorsPerLaunch];
  float* grad[kTensorsPerLaunch];
  float* momentum[kTensorsPerLaunch];
  int64_t n[kTensorsPerLaunch];
  float weight_decay[kTensorsPerLaunch];
};

// lr_on_device and skip: SgdDeviceInputs' tensors, null when not given.
__global__ void sgd_momentum_kernel(SgdGroup group, float lr_value, const float* lr_on_device, const float* skip,
                                    float momentum_coef, float grad_scale, bool zero_grad) {
  const bool skipped = skip && *skip != 0.0f;
  if (skipped && !zero_grad) return;
  const float lr = lr_on_device ? *lr_on_device : lr_value;
  const int t = blockIdx.y;
  float* __restrict__ p = group.param[t];
  float* __restrict__ g = group.grad[t];
  float* __restrict__ v = group.momentum[t];
  const float weight_decay = group.weight_decay[t];
  const int64_t n = group.n[t];
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if (!skipped) {
      const float step_grad = g[i] * grad_scale + weight_decay * p[i];
      const float velocity = momentum_coef * v[i] + step_grad;
      v[i] = velocity;
      p[i] -= lr * velocity;
    }
    if (zero_grad) g[i] = 0.0f;
  }
}

__global__ void flag_nonfinite_kernel(const float* x, int64_t n, float* flag) {
  CUFACE_KERNEL_LOOP(i, n) {
    if (!isfinite(x[i])) *flag = 1.0f;  // every writer writes the same value
  }
}

const float* data_or_null(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }
}  // namespace

void sgd_momentum_update(Context& ctx, const std::vector<SgdTensor>& tensors, float lr, float momentum_coef,
                         float grad_scale, bool zero_grad, const SgdDeviceInputs& device) {
  for (size_t first = 0; first < tensors.size(); first += kTensorsPerLaunch) {
    const int count = int(std::min<size_t>(kTensorsPerLaunch, tensors.size() - first));
    SgdGroup group{};
    int64_t largest = 0;
    for (int k = 0; k < count; ++k) {
      const SgdTensor& t = tensors[first + size_t(k)];
      group.param[k] = t.param.data<float>();
      group.grad[k] = t.grad.data<float>();
      group.momentum[k] = t.momentum.data<float>();
      group.n[k] = t.param.numel();
      group.weight_decay[k] = t.weight_decay;
      largest = std::max(largest, group.n[k]);
    }
    if (largest == 0) continue;
    const dim3 grid(unsigned(std::min((largest + kBlock - 1) / kBlock, kMaxBlocksPerTensor)), unsigned(count));
    launch(sgd_momentum_kernel, grid, kBlock, 0, cuda_stream(ctx), group, lr, data_or_null(device.lr),
           data_or_null(device.skip), momentum_coef, grad_scale, zero_grad);
  }
}

void flag_nonfinite(Context& ctx, const Tensor& x, Tensor& flag) {
  const int64_t n = x.numel();
  if (n == 0) return;
  launch(flag_nonfinite_kernel, grid_for(n, kBlock), kBlock, 0, cuda_stream(ctx), x.data<float>(), n,
         flag.data<float>());
}

}  // namespace cuface::cuda
