#include "engine/allocator.h"

#include <sys/mman.h>

#include <algorithm>
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

namespace {

// A free block of `size` to `largest` bytes from `list` (the smallest such), or null; `size` becomes
// the block's. The upper bound keeps big blocks from being spent on small tensors.
void* take_block(std::multimap<size_t, void*>& list, size_t& size, size_t largest) {
  auto it = list.lower_bound(size);
  if (it == list.end() || it->first > largest) return nullptr;
  size = it->first;
  void* ptr = it->second;
  list.erase(it);
  return ptr;
}

}  // namespace

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

void* CudaCachingAllocator::cuda_malloc(size_t size) {
#if CUFACE_HAS_CUDA
  // During a capture cudaMalloc is a call CUDA refuses unless this thread is relaxed: an
  // allocation is not stream work, so it is safe here (the graph keeps the block).
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode));
  void* ptr = nullptr;
  if (cudaMalloc(&ptr, size) != cudaSuccess) {
    cudaGetLastError();
    ptr = nullptr;
  }
  CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode));
  return ptr;
#else
  (void)size;
  return nullptr;
#endif
}

void* CudaCachingAllocator::allocate(size_t bytes) {
#if CUFACE_HAS_CUDA
  if (cuda_device_count() == 0) throw_no_cuda("GPU allocation");
  size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  const PoolId pool = capturing_pool_ && std::this_thread::get_id() == capturing_thread_ ? capturing_pool_ : 0;
  const size_t largest = kEmulatedCuda ? size : 2 * size;
  void* ptr = pool ? take_block(pool_free_[pool], size, largest) : nullptr;
  if (!ptr) ptr = take_block(free_blocks_, size, largest);
  if (!ptr) {
    ptr = cuda_malloc(size);
    if (!ptr && !pool) {
      // Out of memory: give the cache back to the driver and try once more (not during a capture:
      // cudaFree would end it).
      for (auto& [block_size, block] : free_blocks_) {
        CUDA_CHECK(cudaFree(block));
        stats_.bytes_reserved -= block_size;
      }
      free_blocks_.clear();
      ptr = cuda_malloc(size);
    }
    CUFACE_CHECK(ptr, "GPU out of memory allocating " + std::to_string(size) + " bytes (" +
                          std::to_string(stats_.bytes_in_use) + " in use)");
    stats_.bytes_reserved += size;
    ++stats_.system_allocations;
  }
  live_blocks_[ptr] = size;
  if (pool) block_pool_[ptr] = pool;
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
  // A block freed while its thread captures may still be read by the captured work (it was
  // allocated before the capture): the graph keeps it too.
  PoolId pool = capturing_pool_ && std::this_thread::get_id() == capturing_thread_ ? capturing_pool_ : 0;
  if (auto owner = block_pool_.find(ptr); owner != block_pool_.end()) {
    pool = owner->second;
    block_pool_.erase(owner);
  }
  (pool ? pool_free_[pool] : free_blocks_).emplace(it->second, ptr);
  live_blocks_.erase(it);
}

CudaCachingAllocator::PoolId CudaCachingAllocator::begin_pool_capture() {
  std::lock_guard<std::mutex> lock(mutex_);
  CUFACE_CHECK(capturing_pool_ == 0, "a CUDA graph capture is already under way");
  capturing_pool_ = next_pool_++;
  capturing_thread_ = std::this_thread::get_id();
  pool_free_[capturing_pool_];
  return capturing_pool_;
}

void CudaCachingAllocator::end_pool_capture() {
  std::lock_guard<std::mutex> lock(mutex_);
  capturing_pool_ = 0;
}

void CudaCachingAllocator::release_pool(PoolId pool) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto list = pool_free_.find(pool);
  if (list == pool_free_.end()) return;
  free_blocks_.insert(list->second.begin(), list->second.end());
  pool_free_.erase(list);
  std::erase_if(block_pool_, [pool](const auto& entry) { return entry.second == pool; });
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

constexpr size_t kHugePage = size_t(2) << 20;

size_t host_block_size(size_t bytes) {
  const size_t page = bytes >= kHugePage ? kHugePage : 4096;
  return (std::max<size_t>(bytes, 1) + page - 1) / page * page;
}

void* allocate_host_block(size_t size) {
  const bool huge = size >= kHugePage;
  void* ptr = std::aligned_alloc(huge ? kHugePage : 64, size);
#ifdef MADV_HUGEPAGE
  if (ptr && huge) madvise(ptr, size, MADV_HUGEPAGE);  // a hint: without THP the pages stay 4 KiB
#endif
  return ptr;
}

HostCachingAllocator& HostCachingAllocator::instance() {
  // Never destroyed: tensors in other static objects may be freed after it would be.
  static HostCachingAllocator* allocator = new HostCachingAllocator;
  return *allocator;
}

void* HostCachingAllocator::allocate(size_t bytes) {
  const size_t small = std::max<size_t>((bytes + 63) / 64 * 64, 64);
  if (small < kMinCachedBytes) {
    void* ptr = std::aligned_alloc(64, small);
    CUFACE_CHECK(ptr, "out of host memory allocating " + std::to_string(bytes) + " bytes");
    return ptr;
  }
  size_t size = host_block_size(bytes);  // whole pages: a few sizes recur every step
  std::lock_guard<std::mutex> lock(mutex_);
  void* ptr = take_block(free_blocks_, size, 2 * size);
  if (ptr) {
    bytes_cached_ -= size;
  } else {
    ptr = allocate_host_block(size);
    if (!ptr) {
      release_cached_locked();
      ptr = allocate_host_block(size);
    }
    CUFACE_CHECK(ptr, "out of host memory allocating " + std::to_string(bytes) + " bytes (" +
                          std::to_string(stats_.bytes_in_use) + " in use)");
    stats_.bytes_reserved += size;
    ++stats_.system_allocations;
  }
  live_blocks_[ptr] = size;
  stats_.bytes_in_use += size;
  stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
  most_in_use_ = std::max(most_in_use_, stats_.bytes_in_use);
  return ptr;
}

void HostCachingAllocator::free(void* ptr) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_blocks_.find(ptr);
  if (it == live_blocks_.end()) {  // a small block: malloc's
    std::free(ptr);
    return;
  }
  const size_t size = it->second;
  live_blocks_.erase(it);
  stats_.bytes_in_use -= size;
  // Over the bound, the smallest free blocks go first: sizes that stopped recurring, most likely.
  while (bytes_cached_ + size > most_in_use_ && !free_blocks_.empty()) {
    auto smallest = free_blocks_.begin();
    std::free(smallest->second);
    stats_.bytes_reserved -= smallest->first;
    bytes_cached_ -= smallest->first;
    free_blocks_.erase(smallest);
  }
  free_blocks_.emplace(size, ptr);
  bytes_cached_ += size;
}

void HostCachingAllocator::release_cached_locked() {
  for (auto& [size, block] : free_blocks_) {
    std::free(block);
    stats_.bytes_reserved -= size;
  }
  free_blocks_.clear();
  bytes_cached_ = 0;
}

void HostCachingAllocator::release_cached() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_cached_locked();
}

size_t HostCachingAllocator::bytes_cached() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return bytes_cached_;
}

AllocatorStats HostCachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void HostCachingAllocator::reset_peak() {
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
