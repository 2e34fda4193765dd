// Errors: every failure becomes one cuface::Error with a message that names what failed and where.
#pragma once
#include <stdexcept>
#include <string>

namespace cuface {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] void throw_error(const std::string& message, const char* file, int line);

}  // namespace cuface

// CUFACE_CHECK(cond, message): an internal invariant or a validated user input; throws on failure.
#define CUFACE_CHECK(cond, message)                                                    \
  do {                                                                                 \
    if (!(cond)) ::cuface::throw_error(std::string(message), __FILE__, __LINE__);      \
  } while (0)
