// Partial FC's row gather and scatter-add on every backend against a plain host loop. Both are exact:
// a gather copies, and a scatter-add with distinct indices (select_classes' are) does one f32
// addition per element. The selection itself is tested in tests/layers/test_margin_head.cpp.
#include <gtest/gtest.h>

#include "common/backends.h"
#include "common/reference.h"
#include "kernels/partial_fc.h"

namespace cuface {
namespace {

class PartialFcRows : public testing::BackendTest {};

TEST_P(PartialFcRows, GatherAndScatterAddMatchAHostLoop) {
  const int64_t rows = 1000, dim = 67;  // odd D: a row is no multiple of any vector width
  const Tensor source = testing::random_tensor({rows, dim}, 1);
  // Distinct indices, not in order, first and last row included.
  Tensor index = Tensor::empty({5}, DType::I32);
  const int32_t picks[5] = {999, 3, 0, 512, 77};
  for (int k = 0; k < 5; ++k) index.data<int32_t>()[k] = picks[k];
  const Tensor device_index = index.to(device());

  Tensor gathered = Tensor::empty({5, dim}, DType::F32, device());
  testing::poison(gathered);
  gather_rows(ctx(), source.to(device()), device_index, gathered);

  const Tensor updates = testing::random_tensor({5, dim}, 2), start = testing::random_tensor({rows, dim}, 3);
  Tensor accumulated = start.to(device());
  scatter_add_rows(ctx(), updates.to(device()), device_index, accumulated);
  ctx().synchronize();

  const Tensor got = gathered.to(Device::CPU), sum = accumulated.to(Device::CPU);
  for (int k = 0; k < 5; ++k)
    for (int64_t j = 0; j < dim; ++j)
      ASSERT_EQ(got.data<float>()[k * dim + j], source.data<float>()[picks[k] * dim + j]) << k << "," << j;
  Tensor want = start.clone();
  for (int k = 0; k < 5; ++k)
    for (int64_t j = 0; j < dim; ++j) want.data<float>()[picks[k] * dim + j] += updates.data<float>()[k * dim + j];
  for (int64_t e = 0; e < rows * dim; ++e) ASSERT_EQ(sum.data<float>()[e], want.data<float>()[e]) << e;
}

CUFACE_ON_EVERY_BACKEND(PartialFcRows);

}  // namespace
}  // namespace cuface
