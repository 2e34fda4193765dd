// Context: where and how kernels run. On CUDA it owns the compute stream, the cuBLAS and cuDNN
// handles and one reusable workspace; on CPU it only records the thread count. Kernels receive it
// explicitly; CUDA types stay behind engine/cuda_context.h so layers never see them.
#pragma once
#include <memory>
#include <string>

#include "engine/tensor.h"

namespace cuface {

// GEMM/convolution arithmetic on the GPU. fp32: exact fp32; tf32: tensor-core TF32 inputs with fp32
// accumulation; bf16: bf16 activations/weight copies with fp32 accumulation. CPU always runs fp32.
enum class Precision : uint8_t { FP32, TF32, BF16 };
Precision parse_precision(const std::string& name);  // "fp32" | "tf32" | "bf16"; throws otherwise
const char* precision_name(Precision precision);

struct CudaResources;  // stream, handles, workspace: defined in engine/cuda_context.h
class Profiler;        // engine/profiler.h

class Context {
 public:
  explicit Context(Device device = Device::CPU, int gpu_index = 0);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  Device device() const { return device_; }
  bool is_cuda() const { return device_ == Device::CUDA; }
  int gpu_index() const { return gpu_index_; }
  Precision precision() const { return precision_; }
  void set_precision(Precision precision) { precision_ = precision; }
  // Only reproducible algorithms (`--deterministic`): cuDNN's convolution search skips those whose
  // results vary from run to run (atomics). Our own kernels and cuBLAS are deterministic on a given
  // GPU either way, as is every CPU kernel.
  bool deterministic() const { return deterministic_; }
  void set_deterministic(bool deterministic) { deterministic_ = deterministic; }
  int cpu_threads() const { return cpu_threads_; }
  void set_cpu_threads(int threads);

  // Blocks the host until queued work on this context is finished (no-op on CPU). Never inside the
  // training loop; for measurements, tests and the end of a run.
  void synchronize();

  CudaResources& cuda();  // throws on a CPU context

  // Where ProfileScopes on this context record their timings (engine/profiler.h); null: none.
  Profiler* profiler() const { return profiler_; }
  void set_profiler(Profiler* profiler) { profiler_ = profiler; }

 private:
  Device device_;
  int gpu_index_;
  Precision precision_ = Precision::FP32;
  bool deterministic_ = false;
  int cpu_threads_;
  std::unique_ptr<CudaResources> cuda_;
  Profiler* profiler_ = nullptr;
};

// "auto" picks CUDA when a GPU is present. Throws with a clear message for "cuda" without a GPU.
Device parse_device(const std::string& name);

// parse_precision, plus "auto": bf16 mixed precision on a GPU with bf16 tensor cores (compute
// capability 8.0 and later, as InsightFace trains with fp16/bf16 by default), fp32 elsewhere (the
// CPU, which always runs fp32, and older GPUs).
Precision resolve_precision(const std::string& name, const Context& ctx);

}  // namespace cuface
