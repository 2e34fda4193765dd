#include "kernels/dispatch.h"

namespace cuface {

void throw_no_cuda_backend(const char* function) {
  throw Error(std::string(function) + ": CUDA tensor given, but this build of cuface has no CUDA backend");
}

}  // namespace cuface
