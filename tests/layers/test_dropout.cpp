// Dropout layer: finite differences at a pinned step, the step counter (advance, set, resume),
// evaluation as the identity, and the same masks on CUDA.
#include <gtest/gtest.h>

#include "common/backends.h"
#include "common/gradcheck.h"
#include "common/reference.h"
#include "kernels/dropout.h"
#include "layers/dropout.h"

namespace cuface {
namespace {

using testing::random_tensor;
using testing::relative_error;

// Runs every forward at the same step, so the finite-difference checker's many forwards all see the
// mask the analytic backward used.
class PinnedStep : public Layer {
 public:
  PinnedStep(Dropout& dropout, uint64_t step) : dropout_(dropout), step_(step) {}
  const char* type() const override { return "PinnedStep"; }
  Tensor forward(Context& ctx, const Tensor& x) override {
    dropout_.set_step(step_);
    return dropout_.forward(ctx, x);
  }
  Tensor backward(Context& ctx, const Tensor& dy) override { return dropout_.backward(ctx, dy); }

 private:
  Dropout& dropout_;
  uint64_t step_;
};

// Dropout is linear in x for a fixed mask: the central difference is exact up to float32 rounding.
TEST(DropoutLayer, BackwardMatchesFiniteDifferencesAtAFixedStep) {
  Context ctx(Device::CPU);
  Dropout dropout(0.4f, 77);
  PinnedStep pinned(dropout, 5);
  const testing::GradCheckResult r = testing::check_layer_gradients(ctx, pinned, random_tensor({6, 33}, 1));
  EXPECT_LT(r.input_error, 1e-3);
}

TEST(DropoutLayer, EachTrainingForwardAdvancesTheStepAndBackwardUsesItsForwardsMask) {
  Context ctx(Device::CPU);
  Dropout dropout(0.5f, 9);
  EXPECT_EQ(dropout.step(), 0u);
  Tensor x = random_tensor({16, 16}, 2, 0.5f, 1.5f), dy = random_tensor({16, 16}, 3, 0.5f, 1.5f);
  Tensor y0 = dropout.forward(ctx, x);
  EXPECT_EQ(dropout.step(), 1u);
  Tensor dx0 = dropout.backward(ctx, dy);
  Tensor y1 = dropout.forward(ctx, x);
  EXPECT_EQ(dropout.step(), 2u);
  EXPECT_GT(relative_error(y1, y0), 0.1);  // a new mask

  // Each forward's output is the kernel at (seed, step); backward is the same mask applied to dy.
  Tensor want0 = Tensor::empty(x.shape()), want_dx0 = Tensor::empty(x.shape());
  cuface::dropout(ctx, x, want0, 0.5f, 9, 0);
  cuface::dropout(ctx, dy, want_dx0, 0.5f, 9, 0);
  EXPECT_EQ(relative_error(y0, want0), 0.0);
  EXPECT_EQ(relative_error(dx0, want_dx0), 0.0);

  // Resuming at step 1 redraws exactly the mask of the uninterrupted run.
  Dropout resumed(0.5f, 9);
  resumed.set_step(1);
  EXPECT_EQ(relative_error(resumed.forward(ctx, x), y1), 0.0);
}

TEST(DropoutLayer, EvaluationAndZeroProbabilityAreTheIdentity) {
  Context ctx(Device::CPU);
  Tensor x = random_tensor({4, 8}, 4), dy = random_tensor({4, 8}, 5);
  Dropout dropout(0.5f, 1);
  dropout.set_training(false);
  Tensor y = dropout.forward(ctx, x);
  EXPECT_EQ(y.raw(), x.raw());  // no copy
  EXPECT_EQ(dropout.backward(ctx, dy).raw(), dy.raw());
  EXPECT_EQ(dropout.step(), 0u);  // evaluation draws nothing
  Dropout none(0.0f, 1);
  EXPECT_EQ(none.forward(ctx, x).raw(), x.raw());
  EXPECT_TRUE(none.named_parameters().empty());
  EXPECT_THROW(Dropout(1.0f, 1), Error);
}

TEST(DropoutLayerCuda, SameMasksAsCpu) {
  CUFACE_REQUIRE_GPU();
  Context cpu(Device::CPU), gpu(Device::CUDA);
  Dropout host(0.4f, 1234), device(0.4f, 1234);
  Tensor x = random_tensor({150, 2048}, 6), dy = random_tensor({150, 2048}, 7);
  for (int step = 0; step < 2; ++step) {
    Tensor y = host.forward(cpu, x), dx = host.backward(cpu, dy);
    Tensor d_y = device.forward(gpu, x.to(Device::CUDA)), d_dx = device.backward(gpu, dy.to(Device::CUDA));
    gpu.synchronize();
    EXPECT_EQ(relative_error(d_y, y), 0.0) << step;
    EXPECT_EQ(relative_error(d_dx, dx), 0.0) << step;
  }
}

}  // namespace
}  // namespace cuface
