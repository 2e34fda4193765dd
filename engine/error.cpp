#include "engine/error.h"

#include <cstring>

namespace cuface {

void throw_error(const std::string& message, const char* file, int line) {
  const char* name = std::strrchr(file, '/');
  throw Error(message + " (" + (name ? name + 1 : file) + ":" + std::to_string(line) + ")");
}

}  // namespace cuface
