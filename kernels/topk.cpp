#include "kernels/topk.h"

namespace cuface {

void check_top_k(const Tensor* scores, const Tensor& best_score, const Tensor& best_index, const char* what) {
  const std::string name(what);
  CUFACE_CHECK(best_score.defined() && best_score.rank() == 2 && best_score.dtype() == DType::F32 &&
                   best_score.size(1) >= 1,
               name + ": best_score must be f32 [rows, k >= 1], got " + (best_score.defined() ? best_score.str() : "undefined"));
  CUFACE_CHECK(best_index.defined() && best_index.dtype() == DType::I32 && best_index.shape() == best_score.shape(),
               name + ": best_index must be i32 " + best_score.shape().str() + ", got " +
                   (best_index.defined() ? best_index.str() : "undefined"));
  check_same_device(best_score, best_index, what);
  if (scores == nullptr) return;
  CUFACE_CHECK(scores->defined() && scores->rank() == 2 && scores->dtype() == DType::F32 &&
                   scores->size(0) == best_score.size(0),
               name + ": scores must be f32 [" + std::to_string(best_score.size(0)) + ", n], got " +
                   (scores->defined() ? scores->str() : "undefined"));
  check_same_device(*scores, best_score, what);
}

}  // namespace cuface
