#include <gtest/gtest.h>

#include "common/gradcheck.h"
#include "common/margin_reference.h"
#include "layers/l2_normalize.h"

namespace cuface {
namespace {

TEST(L2Normalize, UnitRowsAndFiniteDifferenceGradient) {
  Context ctx(Device::CPU);
  L2Normalize layer;
  Tensor x = testing::random_tensor({6, 9}, 12);
  const Tensor y = layer.forward(ctx, x);
  EXPECT_LT(testing::relative_error(testing::to_doubles(y), testing::reference_normalise(testing::to_doubles(x), 6, 9)), 1e-6);
  const testing::GradCheckResult result = testing::check_layer_gradients(ctx, layer, x);
  EXPECT_LT(result.input_error, 1e-3);
}

}  // namespace
}  // namespace cuface
