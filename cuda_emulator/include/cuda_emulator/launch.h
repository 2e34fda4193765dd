// Kernel launches as the emulator takes them: the kernel and a copy of its arguments become one
// type-erased thread body that every emulated CUDA thread of the grid calls (grid.cpp).
#pragma once
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

namespace cuda_emulator {

struct LaunchShape {
  dim3 grid;
  dim3 block;
  size_t dynamic_shared_bytes;
  dim3 cluster;  // (1, 1, 1): no clusters
};

// A kernel is known by its address (attributes set by cudaFuncSetAttribute, names in messages).
using KernelKey = const void*;
template <class... Params>
KernelKey kernel_key(void (*kernel)(Params...)) {
  return reinterpret_cast<KernelKey>(kernel);
}

// Checks the launch as the hardware would (block and grid limits, shared memory, clusters) and
// queues the grid on `stream`; returns cudaErrorInvalidConfiguration & co. for a bad launch.
cudaError_t submit_launch(KernelKey kernel, const LaunchShape& shape, cudaStream_t stream,
                          std::function<void()> thread_body);
cudaError_t set_kernel_attribute(KernelKey kernel, cudaFuncAttribute attribute, int value);
// Fills `attributes`; the static shared memory is learnt by running `probe` (the kernel with zeroed
// arguments) up to its first use of a thread index, which is where its declarations end.
cudaError_t kernel_attributes(KernelKey kernel, const std::function<void()>& probe, cudaFuncAttributes* attributes);

template <class... Params, class... Args>
cudaError_t launch(void (*kernel)(Params...), const LaunchShape& shape, cudaStream_t stream, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "a kernel launch passes every parameter");
  // Arguments are converted to the parameter types and copied at launch, as CUDA does.
  std::tuple<std::decay_t<Params>...> arguments(std::forward<Args>(args)...);
  return submit_launch(kernel_key(kernel), shape, stream, [kernel, arguments] { std::apply(kernel, arguments); });
}

template <class... Params>
cudaError_t kernel_attributes(void (*kernel)(Params...), cudaFuncAttributes* attributes) {
  return kernel_attributes(kernel_key(kernel), [kernel] { std::apply(kernel, std::tuple<std::decay_t<Params>...>{}); },
                           attributes);
}

}  // namespace cuda_emulator
