#include "engine/allocator.h"

#include <cstdlib>
#include <cstring>

#include "engine/error.h"
#include "engine/tensor.h"

#if CUFACE_HAS_CUDA
#include "engine/cuda_check.h"
#endif

namespace cuface {

int cuda_device_count() {
#if CUFACE_HAS_CUDA
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky "no driver" error
      return 0;
    }
    return n;
  }();
  return count;
#else
  return 0;
#endif
}

[[noreturn]] static void throw_no_cuda(const char* what) {
  throw Error(std::string(what) + ": no CUDA device available (built without CUDA or no GPU present)");
}

#if CUFACE_CUDA_EMULATED
constexpr bool kEmulatedCuda = true;  // exact sizes: see round_size
#else
constexpr bool kEmulatedCuda = false;
#endif

CudaCachingAllocator& CudaCachingAllocator::instance() {
  static CudaCachingAllocator allocator;
  return allocator;
}

size_t CudaCachingAllocator::round_size(size_t bytes) {
  if (bytes == 0) bytes = 1;
#if CUFACE_CUDA_EMULATED
  // Under the emulator every block has its tensor's exact size, so that the guard page after it
  // catches a read one element past the tensor's end.
  return bytes;
#else
  // Small blocks on a 512-byte grain, large ones on 2 MiB so that a few sizes recur every step.
  const size_t small = 512, large = size_t(2) << 20;
  return bytes < large ? (bytes + small - 1) / small * small : (bytes + large - 1) / large * large;
#endif
}

void* CudaCachingAllocator::allocate(size_t bytes) {
#if CUFACE_HAS_CUDA
  if (cuda_device_count() == 0) throw_no_cuda("GPU allocation");
  size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  void* ptr = nullptr;
  auto it = free_blocks_.lower_bound(size);
  if (it != free_blocks_.end() && it->first <= (kEmulatedCuda ? size : 2 * size)) {
    size = it->first;
    ptr = it->second;
    free_blocks_.erase(it);
  } else {
    if (cudaMalloc(&ptr, size) != cudaSuccess) {
      cudaGetLastError();
      // Out of memory: give the cache back to the driver and try once more.
      for (auto& [block_size, block] : free_blocks_) {
        CUDA_CHECK(cudaFree(block));
        stats_.bytes_reserved -= block_size;
      }
      free_blocks_.clear();
      cudaError_t status = cudaMalloc(&ptr, size);
      CUFACE_CHECK(status == cudaSuccess, "GPU out of memory allocating " + std::to_string(size) + " bytes (" +
                                              std::to_string(stats_.bytes_in_use) + " in use)");
    }
    stats_.bytes_reserved += size;
    ++stats_.cuda_malloc_calls;
  }
  live_blocks_[ptr] = size;
  stats_.bytes_in_use += size;
  stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
  return ptr;
#else
  (void)bytes;
  throw_no_cuda("GPU allocation");
#endif
}

void CudaCachingAllocator::free(void* ptr) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_blocks_.find(ptr);
  if (it == live_blocks_.end()) return;  // not ours (should not happen); never crash in a destructor
  stats_.bytes_in_use -= it->second;
  free_blocks_.emplace(it->second, ptr);
  live_blocks_.erase(it);
}

void CudaCachingAllocator::release_cached() {
#if CUFACE_HAS_CUDA
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& [size, block] : free_blocks_) {
    cudaFree(block);
    stats_.bytes_reserved -= size;
  }
  free_blocks_.clear();
#endif
}

AllocatorStats CudaCachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CudaCachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_bytes_in_use = stats_.bytes_in_use;
}

void* pinned_allocate(size_t bytes, bool* pinned) {
  bytes = std::max<size_t>(bytes, 1);
#if CUFACE_HAS_CUDA
  if (cuda_device_count() > 0) {
    void* ptr = nullptr;
    CUDA_CHECK(cudaHostAlloc(&ptr, bytes, cudaHostAllocDefault));
    *pinned = true;
    return ptr;
  }
#endif
  *pinned = false;
  void* ptr = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  CUFACE_CHECK(ptr, "out of host memory allocating " + std::to_string(bytes) + " bytes");
  return ptr;
}

void pinned_free(void* ptr, bool pinned) {
#if CUFACE_HAS_CUDA
  if (pinned) {
    cudaFreeHost(ptr);
    return;
  }
#endif
  (void)pinned;
  std::free(ptr);
}

void device_copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (dst_device == Device::CPU && src_device == Device::CPU) {
    std::memcpy(dst, src, bytes);
    return;
  }
#if CUFACE_HAS_CUDA
  CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
#else
  throw_no_cuda("device copy");
#endif
}

void device_memset_zero(void* ptr, size_t bytes) {
#if CUFACE_HAS_CUDA
  CUDA_CHECK(cudaMemset(ptr, 0, bytes));
#else
  (void)ptr;
  (void)bytes;
  throw_no_cuda("device memset");
#endif
}

}  // namespace cuface
