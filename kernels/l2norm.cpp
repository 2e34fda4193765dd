#include "kernels/l2norm.h"

namespace cuface {

void check_l2norm(const Tensor& x, const Tensor& norms, const Tensor& other, const char* what) {
  CUFACE_CHECK(x.defined() && x.rank() == 2 && x.dtype() == DType::F32,
               std::string(what) + ": x must be f32 [rows, D], got " + (x.defined() ? x.str() : "undefined"));
  check_shape(norms, Shape{x.size(0)}, what);
  check_shape(other, x.shape(), what);
  check_same_device(x, norms, what);
  check_same_device(x, other, what);
}

}  // namespace cuface
