// Device built-ins as emulated kernels see them. Each CUDA thread runs on a fiber of its own
// (cuda_emulator/fiber.h). Barriers, shuffles and votes switch
// back to the block's scheduler (grid.cpp), which runs the other threads in a seeded random order
// until every thread the operation names has arrived.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace cuda_emulator {


// Block-wide barrier; returns how many threads arrived with a non-zero `predicate`. `site` (the
// calling line) tells barriers apart (two __syncthreads in different places must not pair up).
struct Site {
  const char* file;
  int line;
};
int block_barrier(int predicate, Site site);
// Warp-wide exchange: every lane named in `mask` deposits `value` and receives the value of lane
// `source_lane(lane)` as computed by `op` and `argument`; also __syncwarp and __ballot_sync.
enum class WarpOp { Sync, ShuffleIndex, ShuffleXor, ShuffleDown, ShuffleUp, Ballot };
uint64_t warp_exchange(WarpOp op, unsigned mask, uint64_t value, int argument, int width, Site site);
[[noreturn]] void trap(const char* why);
// Thread-block clusters (cooperative_groups.h): the barrier over all threads of all blocks of the
// cluster, and another block's copy of a shared variable (distributed shared memory).
void cluster_barrier(Site site);
void* cluster_map_shared(const void* address, unsigned rank);
unsigned cluster_block_rank();
unsigned cluster_size();
// Shared memory of the running block: the storage of one __shared__ declaration (`tag` tells
// declarations apart), or the block's dynamic shared memory.
void* block_shared(const void* tag, size_t bytes, size_t alignment);
void* dynamic_shared();

// Atomics: out of line, in the uninstrumented emulator library, so the race check does not see them.
float atomic_add(float* address, float value);
double atomic_add(double* address, double value);
int atomic_add(int* address, int value);
unsigned atomic_add(unsigned* address, unsigned value);
unsigned long long atomic_add(unsigned long long* address, unsigned long long value);
int atomic_max(int* address, int value);
int atomic_cas(int* address, int compare, int value);
unsigned atomic_cas(unsigned* address, unsigned compare, unsigned value);
int atomic_exchange(int* address, int value);

template <class T>
uint64_t to_bits(T value) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffles move 4- or 8-byte values");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  return bits;
}
template <class T>
T from_bits(uint64_t bits) {
  T value;
  std::memcpy(&value, &bits, sizeof(T));
  return value;
}

}  // namespace cuda_emulator

// The running CUDA thread's coordinates: set by the block's scheduler each time it switches to a
// thread's fiber, so reading them costs what reading any variable costs.
extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;
constexpr int warpSize = 32;

inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::cuda_emulator::block_barrier(0, {file, line});
}
inline int __syncthreads_count(int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::cuda_emulator::block_barrier(predicate, {file, line});
}
inline int __syncthreads_or(int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::cuda_emulator::block_barrier(predicate, {file, line}) != 0;
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::cuda_emulator::warp_exchange(::cuda_emulator::WarpOp::Sync, mask, 0, 0, 32, {file, line});
}
inline unsigned __ballot_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return unsigned(::cuda_emulator::warp_exchange(::cuda_emulator::WarpOp::Ballot, mask, predicate != 0, 0, 32, {file, line}));
}
template <class T>
T __shfl_sync(unsigned mask, T value, int lane, int width = 32, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  using namespace ::cuda_emulator;
  return from_bits<T>(warp_exchange(WarpOp::ShuffleIndex, mask, to_bits(value), lane, width, {file, line}));
}
template <class T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32,
                  const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  using namespace ::cuda_emulator;
  return from_bits<T>(warp_exchange(WarpOp::ShuffleXor, mask, to_bits(value), lane_mask, width, {file, line}));
}
template <class T>
T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = 32,
                   const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  using namespace ::cuda_emulator;
  return from_bits<T>(warp_exchange(WarpOp::ShuffleDown, mask, to_bits(value), int(delta), width, {file, line}));
}
template <class T>
T __shfl_up_sync(unsigned mask, T value, unsigned delta, int width = 32,
                 const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  using namespace ::cuda_emulator;
  return from_bits<T>(warp_exchange(WarpOp::ShuffleUp, mask, to_bits(value), int(delta), width, {file, line}));
}
[[noreturn]] inline void __trap() { ::cuda_emulator::trap("__trap() called"); }

template <class T, class V>
T atomicAdd(T* address, V value) {
  return ::cuda_emulator::atomic_add(address, T(value));
}
inline int atomicMax(int* address, int value) { return ::cuda_emulator::atomic_max(address, value); }
template <class T>
T atomicCAS(T* address, T compare, T value) {
  return ::cuda_emulator::atomic_cas(address, compare, value);
}
inline int atomicExch(int* address, int value) { return ::cuda_emulator::atomic_exchange(address, value); }

// Static and dynamic shared memory. On a GPU `__shared__ float partial[256];`; here each block needs
// storage of its own, so kernels declare shared memory with these macros (kernels/cuda/device.cuh
// gives them their GPU meaning).
template <class T>
using cuda_emulator_declared = T;
#define CUFACE_SHARED(type, name)                                                                      \
  static const char name##_declaration = 0;                                                            \
  cuda_emulator_declared<type>& name = *static_cast<cuda_emulator_declared<type>*>(                    \
      ::cuda_emulator::block_shared(&name##_declaration, sizeof(cuda_emulator_declared<type>),         \
                                    alignof(cuda_emulator_declared<type>)))
#define CUFACE_DYNAMIC_SHARED(type, name) type* name = static_cast<type*>(::cuda_emulator::dynamic_shared())

// ---- math the kernels call (device intrinsics as plain C++) ---------------------------------------
// CUDA declares the classification functions in the global namespace.
using std::isfinite;
using std::isinf;
using std::isnan;
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline unsigned __umulhi(unsigned a, unsigned b) { return unsigned((uint64_t(a) * b) >> 32); }
inline int __float_as_int(float x) { return ::cuda_emulator::from_bits<int>(::cuda_emulator::to_bits(x)); }
inline float __int_as_float(int x) { return ::cuda_emulator::from_bits<float>(::cuda_emulator::to_bits(x)); }
inline unsigned __float_as_uint(float x) { return ::cuda_emulator::from_bits<unsigned>(::cuda_emulator::to_bits(x)); }
inline float __uint_as_float(unsigned x) { return ::cuda_emulator::from_bits<float>(::cuda_emulator::to_bits(x)); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(unsigned(x)); }
template <class T>
inline T __ldg(const T* address) {
  return *address;
}
// CUDA's global min/max overloads for device code (mixed integer widths promote as CUDA does).
template <class A, class B>
inline auto min(A a, B b) -> std::common_type_t<A, B> {
  return b < a ? b : a;
}
template <class A, class B>
inline auto max(A a, B b) -> std::common_type_t<A, B> {
  return a < b ? b : a;
}
