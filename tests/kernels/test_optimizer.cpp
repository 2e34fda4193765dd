// The fused SGD update over a list of tensors: every element of every tensor against the PyTorch
// formula in float64, on every backend (on CUDA the list crosses the per-launch group size); the
// learning rate and skip flag read from the device, and the non-finite flag that sets the latter.
#include <gtest/gtest.h>

#include <cmath>

#include "common/backends.h"
#include "common/reference.h"
#include "kernels/optimizer.h"

namespace cuface {
namespace {

class SgdMomentum : public testing::BackendTest {};

// Several steps with fresh gradients against the PyTorch SGD formula in float64, every element. The
// list mixes sizes (one element, odd, a convolution's) and weight decays, and is longer than
// one CUDA launch's group (48 tensors), so group boundaries and per-entry decay are both exercised.
TEST_P(SgdMomentum, AListMatchesTheFloat64ReferenceOnEveryElement) {
  const float lr = 0.1f, momentum_coef = 0.9f, grad_scale = 0.25f;
  const Shape shapes[] = {Shape{1}, Shape{1031}, Shape{7, 3, 3, 5}, Shape{2}, Shape{3, 17}};
  struct Expected {
    std::vector<double> param, velocity;
  };
  std::vector<SgdTensor> list;
  std::vector<Expected> expected;
  for (int k = 0; k < 53; ++k) {
    const Shape shape = shapes[k % 5];
    Tensor host_param = testing::random_tensor(shape, 1 + uint64_t(k));
    list.push_back({host_param.to(device()), Tensor::zeros(shape, DType::F32, device()),
                    Tensor::zeros(shape, DType::F32, device()), k % 3 == 0 ? 0.0f : 5e-4f * float(k % 4)});
    expected.push_back({testing::to_doubles(host_param), std::vector<double>(size_t(shape.numel()), 0.0)});
  }
  for (int step = 0; step < 3; ++step) {
    std::vector<std::vector<double>> grads;
    for (size_t k = 0; k < list.size(); ++k) {
      Tensor host_grad = testing::random_tensor(list[k].param.shape(), 100 * uint64_t(step) + k, -3.0f, 3.0f);
      list[k].grad.copy_from(host_grad.to(device()));
      grads.push_back(testing::to_doubles(host_grad));
    }
    sgd_momentum_update(ctx(), list, lr, momentum_coef, grad_scale, step == 2);
    ctx().synchronize();
    for (size_t k = 0; k < list.size(); ++k)
      for (size_t i = 0; i < expected[k].param.size(); ++i) {
        Expected& e = expected[k];
        const double g = grads[k][i] * double(grad_scale) + double(list[k].weight_decay) * e.param[i];
        e.velocity[i] = double(momentum_coef) * e.velocity[i] + g;
        e.param[i] -= double(lr) * e.velocity[i];
      }
  }
  for (size_t k = 0; k < list.size(); ++k) {
    const std::vector<double> got_param = testing::to_doubles(list[k].param);
    const std::vector<double> got_velocity = testing::to_doubles(list[k].momentum);
    const std::vector<double> got_grad = testing::to_doubles(list[k].grad);
    for (size_t i = 0; i < got_param.size(); ++i) {
      const Expected& e = expected[k];
      ASSERT_NEAR(got_param[i], e.param[i], 1e-6 * (1 + std::abs(e.param[i]))) << "entry " << k << " element " << i;
      ASSERT_NEAR(got_velocity[i], e.velocity[i], 1e-6 * (1 + std::abs(e.velocity[i])))
          << "entry " << k << " element " << i;
      ASSERT_EQ(got_grad[i], 0.0) << "the last step zeroes the gradient: entry " << k << " element " << i;
    }
  }
}

// Zero learning rate: parameters stay, momentum still accumulates, the gradient is kept unless asked;
// no decay, no momentum: plain SGD.
TEST_P(SgdMomentum, DegenerateSettings) {
  Tensor p0 = testing::random_tensor({64}, 3);
  Tensor g = testing::random_tensor({64}, 4);
  std::vector<SgdTensor> one{{p0.to(device()), g.to(device()), Tensor::zeros({64}, DType::F32, device()), 0.0f}};
  sgd_momentum_update(ctx(), one, 0.0f, 0.9f);
  ctx().synchronize();
  Tensor host_p = one[0].param.to(Device::CPU), host_v = one[0].momentum.to(Device::CPU);
  Tensor host_g = one[0].grad.to(Device::CPU);
  for (int i = 0; i < 64; ++i) {
    EXPECT_EQ(host_p.data<float>()[i], p0.data<float>()[i]);
    EXPECT_EQ(host_v.data<float>()[i], g.data<float>()[i]);
    EXPECT_EQ(host_g.data<float>()[i], g.data<float>()[i]);
  }
  std::vector<SgdTensor> plain{{p0.to(device()), g.to(device()), Tensor::zeros({64}, DType::F32, device()), 0.0f}};
  sgd_momentum_update(ctx(), plain, 0.5f, 0.0f);
  ctx().synchronize();
  Tensor host_q = plain[0].param.to(Device::CPU);
  for (int i = 0; i < 64; ++i)
    EXPECT_FLOAT_EQ(host_q.data<float>()[i], p0.data<float>()[i] - 0.5f * g.data<float>()[i]);
  sgd_momentum_update(ctx(), {}, 0.5f, 0.9f);  // nothing to update
}

// What a step replayed from a CUDA graph passes on the device: the LR read there in place of the value
// passed, and a set skip flag that leaves parameter and momentum as they were (the step whose loss was
// not finite), its gradient kept or zeroed as asked. flag_nonfinite raises the flag for a NaN or an
// infinity only and never lowers it.
TEST_P(SgdMomentum, DeviceLearningRateAndSkipFlag) {
  auto scalar = [&](float value) {
    Tensor t = Tensor::empty({1});
    t.data<float>()[0] = value;
    return t.to(device());
  };
  const Tensor p0 = testing::random_tensor({64}, 3), g = testing::random_tensor({64}, 4);
  std::vector<SgdTensor> one{{p0.to(device()), g.to(device()), Tensor::zeros({64}, DType::F32, device()), 0.0f}};
  for (bool zero_grad : {false, true}) {
    sgd_momentum_update(ctx(), one, 0.5f, 0.9f, 1.0f, zero_grad, {scalar(0.25f), scalar(1.0f)});
    ctx().synchronize();
    EXPECT_EQ(testing::relative_error(one[0].param, p0), 0.0);
    EXPECT_EQ(testing::to_doubles(one[0].momentum), std::vector<double>(64, 0.0));
    EXPECT_EQ(testing::to_doubles(one[0].grad), zero_grad ? std::vector<double>(64, 0.0) : testing::to_doubles(g));
  }
  one[0].grad.copy_from(g.to(device()));

  sgd_momentum_update(ctx(), one, 0.5f, 0.9f, 1.0f, true, {scalar(0.25f), scalar(0.0f)});
  ctx().synchronize();
  const Tensor p1 = one[0].param.to(Device::CPU), g1 = one[0].grad.to(Device::CPU);
  for (int i = 0; i < 64; ++i) {  // v = g on the first step; the device's LR 0.25, not the 0.5 passed
    EXPECT_FLOAT_EQ(p1.data<float>()[i], p0.data<float>()[i] - 0.25f * g.data<float>()[i]) << i;
    EXPECT_EQ(g1.data<float>()[i], 0.0f) << i;
  }

  Tensor values = testing::random_tensor({300}, 5).to(device()), flag = scalar(0.0f);
  flag_nonfinite(ctx(), values, flag);
  EXPECT_EQ(testing::to_doubles(flag)[0], 0.0) << "finite values";
  for (float bad : {NAN, INFINITY, -INFINITY}) {
    Tensor host = testing::random_tensor({300}, 5);
    host.data<float>()[299] = bad;
    flag = scalar(0.0f);
    flag_nonfinite(ctx(), host.to(device()), flag);
    EXPECT_EQ(testing::to_doubles(flag)[0], 1.0) << bad;
    flag_nonfinite(ctx(), values, flag);
    EXPECT_EQ(testing::to_doubles(flag)[0], 1.0) << "finite values leave a raised flag raised";
  }
  EXPECT_THROW(flag_nonfinite(ctx(), values, values), Error);  // the flag is one element
  const SgdDeviceInputs integer_lr{Tensor::zeros({1}, DType::I32, device()), Tensor()};
  EXPECT_THROW(sgd_momentum_update(ctx(), one, 0.5f, 0.9f, 1.0f, true, integer_lr), Error);
}

TEST_P(SgdMomentum, RejectsMismatchedTensors) {
  Tensor p = Tensor::zeros({8}, DType::F32, device());
  Tensor v = Tensor::zeros({8}, DType::F32, device());
  Tensor good_grad = Tensor::zeros({8}, DType::F32, device());
  Tensor short_grad = Tensor::zeros({7}, DType::F32, device());
  Tensor half_grad = Tensor::zeros({8}, DType::BF16, device());
  EXPECT_THROW(sgd_momentum_update(ctx(), {{p, good_grad, v}, {p, short_grad, v}}, 0.1f, 0.9f), Error);
  EXPECT_THROW(sgd_momentum_update(ctx(), {{p, half_grad, v}}, 0.1f, 0.9f), Error);
  EXPECT_THROW(sgd_momentum_update(ctx(), {{p, Tensor(), v}}, 0.1f, 0.9f), Error);
  if (device() == Device::CUDA) {
    Tensor host_grad = Tensor::zeros({8});
    EXPECT_THROW(sgd_momentum_update(ctx(), {{p, host_grad, v}}, 0.1f, 0.9f), Error);
    EXPECT_THROW(sgd_momentum_update(ctx(), {{p, good_grad, v}, {Tensor::zeros({8}), host_grad, host_grad}}, 0.1f,
                                     0.9f),
                 Error);  // every entry on the first one's device
  }
}

CUFACE_ON_EVERY_BACKEND(SgdMomentum);

}  // namespace
}  // namespace cuface
