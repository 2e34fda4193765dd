#include "kernels/partial_fc.h"

#include <algorithm>
#include <cmath>

namespace cuface {

int64_t partial_fc_sample_count(int64_t classes, int64_t rows, float sample_rate) {
  CUFACE_CHECK(sample_rate > 0.0f && sample_rate <= 1.0f,
               "--sample-rate must be in (0, 1], got " + std::to_string(sample_rate));
  const int64_t wanted = int64_t(std::ceil(double(sample_rate) * double(classes)));
  return std::min(classes, std::max(wanted, rows));
}

ClassWindow check_select_classes(const Tensor& labels, int64_t classes, const Tensor& index,
                                 const Tensor& sampled_labels, ClassWindow window) {
  CUFACE_CHECK(labels.defined() && labels.rank() == 1 && labels.dtype() == DType::I32,
               "select_classes: labels must be i32 [N]");
  CUFACE_CHECK(classes > 0 && classes < (int64_t(1) << 31), "select_classes: class count out of range");
  if (window.count < 0) window.count = classes - window.first;
  CUFACE_CHECK(window.first >= 0 && window.count > 0 && window.first + window.count <= classes,
               "select_classes: window [" + std::to_string(window.first) + ", " +
                   std::to_string(window.first + window.count) + ") outside the " + std::to_string(classes) + " classes");
  CUFACE_CHECK(index.defined() && index.rank() == 1 && index.dtype() == DType::I32 && index.numel() <= window.count &&
                   index.numel() >= std::min(window.count, labels.numel()),
               "select_classes: index must be i32 [K] with min(N, window) <= K <= window, got " +
                   (index.defined() ? index.str() : std::string("undefined")));
  CUFACE_CHECK(sampled_labels.defined() && sampled_labels.dtype() == DType::I32 && sampled_labels.shape() == labels.shape(),
               "select_classes: sampled_labels must be i32 like labels");
  check_same_device(labels, index, "select_classes");
  check_same_device(labels, sampled_labels, "select_classes");
  return window;
}

void check_row_index(const Tensor& rows, const Tensor& index, const Tensor& selected, const char* what) {
  CUFACE_CHECK(rows.defined() && rows.rank() == 2 && rows.dtype() == DType::F32,
               std::string(what) + ": rows must be f32 [R, D]");
  CUFACE_CHECK(index.defined() && index.rank() == 1 && index.dtype() == DType::I32,
               std::string(what) + ": index must be i32 [K]");
  check_shape(selected, Shape{index.numel(), rows.size(1)}, what);
  check_same_device(rows, index, what);
  check_same_device(rows, selected, what);
}

}  // namespace cuface
