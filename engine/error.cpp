#include "engine/error.h"

namespace cuface {

void throw_error(const std::string& message, const char* file, int line) {
  throw Error(message + " (" + file + ":" + std::to_string(line) + ")");
}

}  // namespace cuface
