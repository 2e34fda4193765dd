// Memory: caching allocators for GPU and host memory (after warm-up a training step asks neither the
// driver nor the C library for memory), page-locked host memory for asynchronous copies, and the raw
// copies between devices.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace cuface {

enum class Device : uint8_t;

// Number of usable CUDA devices: 0 when built without CUDA or when no GPU/driver is present.
int cuda_device_count();

struct AllocatorStats {
  size_t bytes_in_use = 0;        // handed out and not yet freed
  size_t peak_bytes_in_use = 0;   // high-water mark of bytes_in_use
  size_t bytes_reserved = 0;      // obtained from the system (in use + cached)
  size_t system_allocations = 0;  // cudaMalloc or malloc calls: a steady training loop adds none
};

// Freed blocks are kept in size-ordered free lists and reused for requests of up to the same size
// (and no smaller than half of it, so big blocks are not wasted on small tensors). All compute runs
// on one stream, so a block freed by the host can be reused by later work on that stream safely.
//
// CUDA graphs (engine/cuda_graph.h): while a thread captures a graph, the blocks it allocates or
// frees belong to that graph's private pool. Every replay writes the addresses the capture saw, so
// those blocks must never be handed to anyone else while the graph lives; within the pool they are
// reused in the capture's own stream order. Destroying the graph returns the pool's free blocks.
class CudaCachingAllocator {
 public:
  using PoolId = uint64_t;  // 0: the shared cache

  static CudaCachingAllocator& instance();
  void* allocate(size_t bytes);
  void free(void* ptr);
  void release_cached();  // returns every cached block of the shared cache to the driver
  AllocatorStats stats() const;
  void reset_peak();

  // Routes the calling thread's allocations and frees into a new pool until end_pool_capture.
  PoolId begin_pool_capture();
  void end_pool_capture();
  // The graph is gone: the pool's free blocks join the shared cache, its live ones will when freed.
  void release_pool(PoolId pool);

 private:
  using FreeList = std::multimap<size_t, void*>;
  static size_t round_size(size_t bytes);
  void* cuda_malloc(size_t size);
  mutable std::mutex mutex_;
  FreeList free_blocks_;
  std::unordered_map<void*, size_t> live_blocks_;
  std::unordered_map<void*, PoolId> block_pool_;  // blocks that belong to a graph's pool
  std::map<PoolId, FreeList> pool_free_;
  PoolId next_pool_ = 1, capturing_pool_ = 0;
  std::thread::id capturing_thread_;
  AllocatorStats stats_;
};

// Host memory in large blocks sits on transparent huge pages where the kernel has them: a block of
// 2 MiB or more is rounded up to whole 2 MiB pages, aligned to one and marked with madvise (Debian's
// default THP mode, "madvise", gives huge pages only to such requests). On 4 KiB pages the passes over
// a 224 px batch's activations (tens of MB a tensor) missed the TLB every 4 KiB: ResNet-50's CPU
// training step at 224 px batch 8 ran 0.95x its time on huge pages (bench/RESULTS.md).
// host_block_size: the size such a block of at least `bytes` has (smaller ones: whole 4 KiB pages).
// allocate_host_block: a block of that size, 64-byte aligned at least; nullptr when out of memory;
// give it back with std::free.
size_t host_block_size(size_t bytes);
void* allocate_host_block(size_t size);

// CPU tensors. glibc serves large requests with fresh pages from the kernel and hands them back on
// free, so every step of a CPU training loop page-faulted its activations in anew: 40,000 faults
// (160 MB) per ResNet-50 embedding of 8 images at 224 px, a fifth of its time on a VM. Blocks of at
// least kMinCachedBytes are therefore kept when freed and reused, as the GPU cache does; smaller ones
// come from malloc's own free lists, which never return them to the kernel anyway.
//
// The free blocks never hold more than the most this allocator has had in use at once (a steady loop
// frees at most that much; past it the smallest go back to the C library): a program whose sizes
// keep changing uses at most twice its peak. When
// the system is out of memory the cache is given back and the request tried once more.
class HostCachingAllocator {
 public:
  static constexpr size_t kMinCachedBytes = size_t(256) << 10;

  static HostCachingAllocator& instance();  // the one CPU tensors use
  HostCachingAllocator() = default;
  ~HostCachingAllocator() { release_cached(); }
  HostCachingAllocator(const HostCachingAllocator&) = delete;
  HostCachingAllocator& operator=(const HostCachingAllocator&) = delete;

  void* allocate(size_t bytes);  // 64-byte aligned, at least one byte
  void free(void* ptr);
  void release_cached();  // returns every free block to the C library
  size_t bytes_cached() const;
  AllocatorStats stats() const;  // of the blocks of at least kMinCachedBytes
  void reset_peak();

 private:
  using FreeList = std::multimap<size_t, void*>;
  void release_cached_locked();
  mutable std::mutex mutex_;
  FreeList free_blocks_;
  std::unordered_map<void*, size_t> live_blocks_;  // cached-size blocks handed out
  size_t bytes_cached_ = 0;
  size_t most_in_use_ = 0;  // high-water mark over the whole run: the bound on the cache
  AllocatorStats stats_;
};

// Page-locked when CUDA is available at run time (`*pinned` says which), plain aligned memory otherwise.
void* pinned_allocate(size_t bytes, bool* pinned);
void pinned_free(void* ptr, bool pinned);

// Synchronous copy of `bytes` between any two devices, and zeroing of device memory.
void device_copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);
void device_memset_zero(void* ptr, size_t bytes);

}  // namespace cuface
