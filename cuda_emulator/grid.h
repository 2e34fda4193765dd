// Running a kernel's grid on the emulated device: blocks (or clusters of blocks) one after another
// in a random order; within one, every CUDA thread a fiber, run in a seeded random order between
// barriers. The checks made here: launch limits, barriers reached by the whole block at the same
// place, warp operations whose masks name lanes that are there, shared-memory races between
// barriers (through the compiler's access hooks), static + dynamic shared memory within limits.
#pragma once
#include <string>

namespace cuda_emulator {

// "kernel NAME, block (x, y, z), thread (x, y, z)" for the CUDA thread running now, or "".
std::string describe_running_thread();

// Called by the fault handler: when the fault ended cudaFuncGetAttributes' probe run of a kernel,
// does not return (the probe is over); otherwise returns false.
bool end_probe_at_fault();

// The name of a kernel (or any function) from its address, for messages.
std::string function_name(const void* function);

}  // namespace cuda_emulator
