// The runtime's error state: the last error (returned and cleared by cudaGetLastError) and, for
// cudaGetErrorString, the emulator's explanation of it.
#pragma once
#include <cuda_runtime.h>

#include <string>

namespace cuda_emulator {
// Records `error` as the last error with an explanation and returns it.
cudaError_t set_error(cudaError_t error, const std::string& detail);
}
