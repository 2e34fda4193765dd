#include "engine/context.h"

#include <omp.h>

#include <thread>

#include "engine/allocator.h"

#if CUFACE_HAS_CUDA
#include "engine/cublas_library.h"
#include "engine/cuda_context.h"
#endif

namespace cuface {

#if !CUFACE_HAS_CUDA
struct CudaResources {};
#endif

Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::FP32;
  if (name == "tf32") return Precision::TF32;
  if (name == "bf16") return Precision::BF16;
  throw Error("unknown precision '" + name + "' (expected auto, fp32, tf32 or bf16)");
}

const char* precision_name(Precision precision) {
  switch (precision) {
    case Precision::FP32: return "fp32";
    case Precision::TF32: return "tf32";
    case Precision::BF16: return "bf16";
  }
  return "unknown";
}

Precision resolve_precision(const std::string& name, const Context& ctx) {
  if (name != "auto") return parse_precision(name);
  if (!ctx.is_cuda()) return Precision::FP32;
#if CUFACE_HAS_CUDA
  int major = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, ctx.gpu_index()));
  return major >= 8 ? Precision::BF16 : Precision::FP32;
#else
  return Precision::FP32;
#endif
}

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::CPU;
  if (name == "cuda" || name == "gpu") {
    CUFACE_CHECK(cuda_device_count() > 0, "--device " + name + ": no CUDA device available");
    return Device::CUDA;
  }
  if (name == "auto") return cuda_device_count() > 0 ? Device::CUDA : Device::CPU;
  throw Error("unknown device '" + name + "' (expected cpu, cuda or auto)");
}

Context::Context(Device device, int gpu_index)
    : device_(device), gpu_index_(gpu_index), cpu_threads_(omp_get_max_threads()) {
  if (device_ != Device::CUDA) return;
#if CUFACE_HAS_CUDA
  CUFACE_CHECK(gpu_index < cuda_device_count(), "GPU " + std::to_string(gpu_index) + " not available (" +
                                                    std::to_string(cuda_device_count()) + " found)");
  CUDA_CHECK(cudaSetDevice(gpu_index));
  cuda_ = std::make_unique<CudaResources>();
  // A blocking stream: the synchronous copies of Tensor::to (legacy default stream) wait for its work.
  CUDA_CHECK(cudaStreamCreate(&cuda_->stream));
  const CublasLibrary& cublas = cublas_library();
  CUBLAS_CHECK(cublas.create(&cuda_->cublas));
  CUBLAS_CHECK(cublas.set_stream(cuda_->cublas, cuda_->stream));
  CUDNN_CHECK(cudnnCreate(&cuda_->cudnn));
  CUDNN_CHECK(cudnnSetStream(cuda_->cudnn, cuda_->stream));
#else
  throw Error("this build of cuface has no CUDA backend");
#endif
}

Context::~Context() {
#if CUFACE_HAS_CUDA
  if (cuda_) {
    cudaStreamSynchronize(cuda_->stream);
    cuda_->workspace = Tensor();
    cudnnDestroy(cuda_->cudnn);
    cublas_library().destroy(cuda_->cublas);
    cudaStreamDestroy(cuda_->stream);
  }
#endif
}

void Context::set_cpu_threads(int threads) {
  cpu_threads_ = threads > 0 ? threads : int(std::thread::hardware_concurrency());
  omp_set_num_threads(cpu_threads_);
}

void Context::synchronize() {
#if CUFACE_HAS_CUDA
  if (cuda_) CUDA_CHECK(cudaStreamSynchronize(cuda_->stream));
#endif
}

CudaResources& Context::cuda() {
  CUFACE_CHECK(cuda_ != nullptr, "CUDA resources requested from a CPU context");
  return *cuda_;
}

#if CUFACE_HAS_CUDA
void* CudaResources::workspace_bytes(size_t bytes) {
  if (!workspace.defined() || workspace.bytes() < bytes) {
    // The old workspace may still be read by queued work; its block returns to the cache, which
    // only hands it out again to later work on this same stream.
    workspace = Tensor::empty({int64_t(std::max<size_t>(bytes, 1))}, DType::U8, Device::CUDA);
  }
  return workspace.raw();
}

const char* cublas_status_name(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "unknown cuBLAS status";
  }
}
#endif

}  // namespace cuface
