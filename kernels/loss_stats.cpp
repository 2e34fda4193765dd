#include "kernels/loss_stats.h"

namespace cuface {

void check_loss_outputs(const Tensor& input, const Tensor& labels, const Tensor& row_stats, const char* what) {
  CUFACE_CHECK(input.defined() && input.rank() == 2 && input.dtype() == DType::F32,
               std::string(what) + ": expected f32 [N, C], got " + (input.defined() ? input.str() : "undefined"));
  const int64_t rows = input.size(0);
  CUFACE_CHECK(labels.defined() && labels.dtype() == DType::I32 && labels.shape() == Shape{rows},
               std::string(what) + ": labels must be i32 [" + std::to_string(rows) + "], got " +
                   (labels.defined() ? labels.str() : "undefined"));
  check_shape(row_stats, Shape{rows, kRowStatColumns}, what);
  check_same_device(input, labels, what);
  check_same_device(input, row_stats, what);
}

}  // namespace cuface
