#include "kernels/elementwise.h"

namespace cuface {

void check_elementwise(const Tensor& x, const Tensor& y, const char* what) {
  CUFACE_CHECK(x.numel() == y.numel() && x.device() == y.device() && x.dtype() == y.dtype(),
               std::string(what) + ": " + x.str() + " and " + y.str() + " differ in size, dtype or device");
}

}  // namespace cuface
