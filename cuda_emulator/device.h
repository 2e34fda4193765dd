// What the emulator's stand-ins for CUDA's libraries (cuBLAS, cuDNN, CUB, NCCL) need from the
// emulated device: queue work on a stream, report a misuse, and check a pointer range.
//
// Library calls are asynchronous like kernels: the call checks its arguments at once (returning the
// library's error status) and queues a closure that does the arithmetic later, in stream order, when
// the emulator's scheduler runs that stream (cuda_emulator/streams.h). Only inside such a closure,
// a kernel or a copy may device memory be read or written: host code touching it is an error.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <functional>
#include <string>

namespace cuda_emulator {

// Queues `work` on `stream` (nullptr: the legacy default stream). `what` names it in error messages,
// e.g. "cublasGemmEx(m=64, n=32, k=16)".
void enqueue(cudaStream_t stream, std::string what, std::function<void()> work);

// A misuse the emulator found (a bad pointer, a race, a barrier that cannot complete): prints
// "cuda emulator: <message>" on stderr and aborts, as a real device would fault; the tests expect
// such deaths with EXPECT_DEATH.
[[noreturn]] void fail(const std::string& message);

// True when [pointer, pointer + bytes) lies inside one live device allocation (cudaMalloc).
bool is_device_range(const void* pointer, size_t bytes);

// The profile of the emulated device (CUFACE_EMU_PROFILE=h100|a100).
struct DeviceProfile {
  const char* name;           // "cuface emulated H100 (sm_90)"
  int major, minor;           // compute capability
  int multiprocessors;
  size_t global_memory;       // bytes reported by cudaGetDeviceProperties / cudaMemGetInfo
  int max_shared_per_block_optin;  // bytes: 227 KiB on sm_90, 163 KiB on sm_80
  bool clusters;              // thread-block clusters (sm_90)
};
const DeviceProfile& profile();

// 10 x major + minor of the architecture the kernels' code was built for, as nvcc -arch=sm_XY would
// have: the profile's own, unless CUFACE_EMU_CODE_VERSION says otherwise (read at each call), e.g.
// 80 for a binary built for sm_80 only and run on an H100. cudaFuncGetAttributes reports it as
// ptxVersion, and a thread-block cluster launch needs at least 90.
int code_version();

}  // namespace cuda_emulator
