// Errors: every failure becomes one cuface::Error with a message that names what failed and where.
#pragma once
#include <stdexcept>
#include <string>

namespace cuface {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// For the checked library calls (CUDA, cuBLAS, cuDNN, MPI, NCCL): the message plus the source
// file's name and line of the call, which is what a report of such a failure needs.
[[noreturn]] void throw_error(const std::string& message, const char* file, int line);

}  // namespace cuface

// CUFACE_CHECK(cond, message): an internal invariant or a validated user input; throws on failure.
// The message is all the user sees, so it names the flag, file or value at fault (no source location).
#define CUFACE_CHECK(cond, message)                              \
  do {                                                           \
    if (!(cond)) throw ::cuface::Error(std::string(message));    \
  } while (0)
