#include <gtest/gtest.h>

#include <cmath>

#include "common/backends.h"
#include "common/reference.h"
#include "kernels/optimizer.h"

namespace cuface {
namespace {

class SgdMomentum : public testing::BackendTest {};

// Several steps with fresh gradients against the PyTorch SGD formula in float64, every element.
TEST_P(SgdMomentum, MatchesTheFloat64ReferenceOnEveryElement) {
  const float lr = 0.1f, momentum_coef = 0.9f, weight_decay = 5e-4f, grad_scale = 0.25f;
  for (const Shape& shape : {Shape{1}, Shape{1031}, Shape{7, 3, 3, 5}}) {
    Tensor host_param = testing::random_tensor(shape, 1);
    std::vector<double> param = testing::to_doubles(host_param), velocity(param.size(), 0.0);
    Tensor p = host_param.to(device());
    Tensor v = Tensor::zeros(shape, DType::F32, device());
    for (int step = 0; step < 4; ++step) {
      Tensor host_grad = testing::random_tensor(shape, 10 + uint64_t(step), -3.0f, 3.0f);
      const std::vector<double> grad = testing::to_doubles(host_grad);
      sgd_momentum_update(ctx(), p, host_grad.to(device()), v, lr, momentum_coef, weight_decay, grad_scale);
      ctx().synchronize();  // before the temporary gradient is freed and the results are copied back
      for (size_t i = 0; i < param.size(); ++i) {
        const double g = grad[i] * double(grad_scale) + double(weight_decay) * param[i];
        velocity[i] = double(momentum_coef) * velocity[i] + g;
        param[i] -= double(lr) * velocity[i];
      }
    }
    const std::vector<double> got_param = testing::to_doubles(p), got_velocity = testing::to_doubles(v);
    for (size_t i = 0; i < param.size(); ++i) {
      ASSERT_NEAR(got_param[i], param[i], 1e-6 * (1 + std::abs(param[i]))) << shape.str() << " element " << i;
      ASSERT_NEAR(got_velocity[i], velocity[i], 1e-6 * (1 + std::abs(velocity[i]))) << shape.str() << " element " << i;
    }
  }
}

// Zero learning rate: parameters stay, momentum still accumulates; no decay, no momentum: plain SGD.
TEST_P(SgdMomentum, DegenerateSettings) {
  Tensor p0 = testing::random_tensor({64}, 3);
  Tensor g = testing::random_tensor({64}, 4);
  Tensor p = p0.to(device()), v = Tensor::zeros({64}, DType::F32, device());
  sgd_momentum_update(ctx(), p, g.to(device()), v, 0.0f, 0.9f, 0.0f);
  ctx().synchronize();
  Tensor host_p = p.to(Device::CPU), host_v = v.to(Device::CPU);
  for (int i = 0; i < 64; ++i) {
    EXPECT_EQ(host_p.data<float>()[i], p0.data<float>()[i]);
    EXPECT_EQ(host_v.data<float>()[i], g.data<float>()[i]);
  }
  Tensor q = p0.to(device()), w = Tensor::zeros({64}, DType::F32, device());
  sgd_momentum_update(ctx(), q, g.to(device()), w, 0.5f, 0.0f, 0.0f);
  ctx().synchronize();
  Tensor host_q = q.to(Device::CPU);
  for (int i = 0; i < 64; ++i)
    EXPECT_FLOAT_EQ(host_q.data<float>()[i], p0.data<float>()[i] - 0.5f * g.data<float>()[i]);
}

TEST_P(SgdMomentum, RejectsMismatchedTensors) {
  Tensor p = Tensor::zeros({8}, DType::F32, device());
  Tensor v = Tensor::zeros({8}, DType::F32, device());
  Tensor short_grad = Tensor::zeros({7}, DType::F32, device());
  Tensor half_grad = Tensor::zeros({8}, DType::BF16, device());
  EXPECT_THROW(sgd_momentum_update(ctx(), p, short_grad, v, 0.1f, 0.9f, 0.0f), Error);
  EXPECT_THROW(sgd_momentum_update(ctx(), p, half_grad, v, 0.1f, 0.9f, 0.0f), Error);
  if (device() == Device::CUDA) {
    Tensor host_grad = Tensor::zeros({8});
    EXPECT_THROW(sgd_momentum_update(ctx(), p, host_grad, v, 0.1f, 0.9f, 0.0f), Error);
  }
}

CUFACE_ON_EVERY_BACKEND(SgdMomentum);

}  // namespace
}  // namespace cuface
