// Device and pinned host memory of the emulated device.
//
// Each cudaMalloc gets pages of its own, its end against a guard page (a one-element read past the
// end faults), filled with 0xFF bytes (NaN in f32/bf16/f16, -1 in integers) so that reading
// memory nobody wrote shows up in the results. Device memory is mapped PROT_NONE except while
// emulated device work runs (open_device_memory .. close_device_memory), so host code that reads
// or writes it faults, and the fault handler names the allocation. Freed memory stays unmapped
// for ever (use after free faults too).
#pragma once
#include <cstddef>
#include <string>

namespace cuda_emulator {

void* device_allocate(size_t bytes);
bool device_free(void* pointer);  // false: not a live device allocation
void* pinned_allocate(size_t bytes);
bool pinned_free(void* pointer);
bool is_pinned(const void* pointer, size_t bytes);
size_t device_bytes_in_use();

// Device memory readable and writable (while device work runs) or not (host code runs).
void open_device_memory();
void close_device_memory();

// Installs the SIGSEGV/SIGBUS handler that explains faults on emulated memory.
void install_fault_handler();

// "file:line (function)" for a code address, for messages; best effort (addr2line).
std::string describe_code_address(const void* address);

}  // namespace cuda_emulator
