// Label checks shared by the CPU loss kernels (margin, its unfused and sharded forms, softmax cross-entropy).
#pragma once
#include <cstdint>
#include <string>

#include "engine/error.h"

namespace cuface::cpu {

// Rejects a label outside [-1, classes) naming the kernel and the row; returns the rows with a
// label (>= 0), over which the losses are averaged.
inline int64_t count_labelled_rows(const int32_t* labels, int64_t rows, int64_t classes, const char* kernel) {
  int64_t labelled = 0;
  for (int64_t i = 0; i < rows; ++i) {
    CUFACE_CHECK(labels[i] >= -1 && labels[i] < classes, std::string(kernel) + ": label " +
                                                             std::to_string(labels[i]) + " of row " + std::to_string(i) +
                                                             " outside [-1, " + std::to_string(classes) + ")");
    labelled += labels[i] >= 0;
  }
  return labelled;
}

}  // namespace cuface::cpu
