// What the stand-ins for cuBLAS, cuDNN, CUB and NCCL share: the number formats the libraries round
// to (bf16, TF32), the check that a pointer the caller calls device memory is device memory, and a
// registry of the live handles a library created, so a destroyed or made-up handle is caught.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>
#include <string>

#include "device.h"

namespace cuda_emulator {

// ---- number formats ---------------------------------------------------------------------------

inline uint32_t float_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}
inline float bits_float(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// bf16 is the upper half of an f32.
inline float bf16_to_float(uint16_t bits) { return bits_float(uint32_t(bits) << 16); }

// Round to nearest, ties to even, as the libraries write bf16 results; NaN stays a (quiet) NaN.
inline uint16_t float_to_bf16(float value) {
  const uint32_t bits = float_bits(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x0040u);
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t((bits + rounding) >> 16);
}

// An f32 value as a TF32 tensor core sees it: 10 explicit mantissa bits, rounded to nearest with
// ties away from zero (PTX cvt.rna.tf32.f32). Infinities and NaNs pass unchanged.
inline float round_to_tf32(float value) {
  const uint32_t bits = float_bits(value);
  if ((bits & 0x7f800000u) == 0x7f800000u) return value;
  return bits_float((bits + 0x1000u) & ~0x1fffu);
}

// ---- pointers -----------------------------------------------------------------------------------

// A misuse unless [pointer, pointer + bytes) is device memory; `call` and `argument` name it.
inline void require_device_memory(const std::string& call, const char* argument, const void* pointer,
                                  size_t bytes) {
  if (bytes == 0 || is_device_range(pointer, bytes)) return;
  char address[32];
  std::snprintf(address, sizeof address, "%p", pointer);
  fail(call + ": " + argument + " = " + address + " (" + std::to_string(bytes) +
       " bytes) is not device memory: no live cudaMalloc allocation holds that range");
}

inline bool ranges_overlap(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  const auto first = reinterpret_cast<uintptr_t>(a), second = reinterpret_cast<uintptr_t>(b);
  return a_bytes > 0 && b_bytes > 0 && first < second + b_bytes && second < first + a_bytes;
}

// A host scalar argument (alpha, beta in the default host pointer mode) is read at the call; one
// in device memory would be a host read of device memory.
inline void require_host_scalar(const std::string& call, const char* argument, const void* pointer) {
  if (pointer != nullptr && is_device_range(pointer, 1))
    fail(call + ": " + argument + " points to device memory, but the pointer mode is host: " +
         "the library reads it on the host at the call");
}

// ---- handles ------------------------------------------------------------------------------------

// The handles of one kind that were created and not yet destroyed.
template <class Handle>
class LiveHandles {
 public:
  void add(Handle handle) {
    std::lock_guard<std::mutex> lock(mutex_);
    live_.insert(handle);
  }
  // False when `handle` was never created or is already destroyed.
  bool remove(Handle handle) {
    std::lock_guard<std::mutex> lock(mutex_);
    return live_.erase(handle) == 1;
  }
  bool contains(Handle handle) {
    std::lock_guard<std::mutex> lock(mutex_);
    return live_.count(handle) == 1;
  }
  // A misuse unless `handle` is live: using a destroyed handle is a use after free on a GPU.
  void require(Handle handle, const std::string& call) {
    if (!contains(handle)) fail(call + ": the handle was never created or is already destroyed");
  }

 private:
  std::mutex mutex_;
  std::set<Handle> live_;
};

}  // namespace cuda_emulator
