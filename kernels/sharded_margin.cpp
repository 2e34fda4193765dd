#include "kernels/sharded_margin.h"

namespace cuface {

void check_sharded_margin(const Tensor& z, const Tensor& labels, const Tensor& maxima, const Tensor& target,
                          const char* what) {
  CUFACE_CHECK(z.defined() && z.rank() == 2 && z.dtype() == DType::F32,
               std::string(what) + ": expected f32 [N, C] logits, got " + (z.defined() ? z.str() : "undefined"));
  const int64_t rows = z.size(0);
  CUFACE_CHECK(labels.defined() && labels.dtype() == DType::I32 && labels.shape() == Shape{rows},
               std::string(what) + ": expected labels i32 [" + std::to_string(rows) + "]");
  check_shape(maxima, Shape{2, rows}, what);
  check_shape(target, Shape{4, rows}, what);
  for (const Tensor* t : {&labels, &maxima, &target}) check_same_device(z, *t, what);
}

}  // namespace cuface
