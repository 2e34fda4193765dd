#include <gtest/gtest.h>

#include "common/backends.h"
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

TEST(L2NormalizeCuda, MatchesTheCpuLayer) {
  CUFACE_REQUIRE_GPU();
  Context cpu(Device::CPU), gpu(Device::CUDA);
  L2Normalize on_cpu, on_gpu;
  const Tensor x = testing::random_tensor({37, 512}, 13), dy = testing::random_tensor({37, 512}, 14);
  const Tensor y = on_cpu.forward(cpu, x), dx = on_cpu.backward(cpu, dy);
  const Tensor gy = on_gpu.forward(gpu, x.to(Device::CUDA)), gdx = on_gpu.backward(gpu, dy.to(Device::CUDA));
  gpu.synchronize();
  EXPECT_LT(testing::relative_error(gy, y), 1e-5);
  EXPECT_LT(testing::relative_error(gdx, dx), 1e-5);
}

}  // namespace
}  // namespace cuface
