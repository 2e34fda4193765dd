// BatchNorm layer: backward against central finite differences and against the float64 reference,
// the Layer contract (names, flags, accumulation, frozen, modes), PyTorch's numbers from a committed
// fixture, and the CUDA layer against the CPU one.
#include <gtest/gtest.h>

#include <random>

#include "common/backends.h"
#include "common/batch_norm_reference.h"
#include "common/device_compare.h"
#include "common/gradcheck.h"
#include "common/reference.h"
#include "engine/safetensors.h"
#include "layers/batch_norm.h"
#include "common/source_dir.h"

namespace cuface {
namespace {

using testing::random_tensor;
using testing::relative_error;
using testing::to_doubles;

// Gives gamma and beta non-trivial values (the defaults 1 and 0 would hide mistakes).
void randomize_affine(BatchNorm& bn, uint64_t seed) {
  if (!bn.options().affine) return;
  bn.weight().value = random_tensor({bn.channels()}, seed, 0.5f, 1.5f);
  bn.bias().value = random_tensor({bn.channels()}, seed + 1, -0.3f, 0.3f);
}

// Per channel, half of the rows hold values v and the other half -v (v in +-[0.3, 1.3], in random
// order): the batch mean is 0 and every |xhat| is at least 0.3 * invstd, so with |beta| <= 0.1 no
// pre-activation lies within a finite-difference step of the ReLU's kink.
Tensor symmetric_away_from_zero(const Shape& shape, uint64_t seed) {
  const int64_t C = shape[shape.rank - 1], rows = shape.numel() / C;
  Tensor x = Tensor::empty(shape);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> magnitude(0.3f, 1.3f);
  for (int64_t c = 0; c < C; ++c) {
    std::vector<int64_t> order(static_cast<size_t>(rows));
    for (int64_t m = 0; m < rows; ++m) order[size_t(m)] = m;
    std::shuffle(order.begin(), order.end(), rng);
    for (int64_t k = 0; k < rows / 2; ++k) {
      const float v = magnitude(rng) * (rng() % 2 ? 1.0f : -1.0f);
      x.data<float>()[order[size_t(k)] * C + c] = v;
      x.data<float>()[order[size_t(k + rows / 2)] * C + c] = -v;
    }
  }
  return x;
}

// ---- finite differences --------------------------------------------------------------------------
//
// The bound: the loss is sum(r * y) over at most ~400 outputs of size ~1, computed in float32 and
// summed in double, so its rounding noise is ~sqrt(400) * 6e-8 ~ 1e-6; divided by 2h = 0.02 that is
// ~6e-5 of a derivative of size ~1. The truncation error h^2/6 * f''' is ~2e-5 for these inputs
// (spread ~0.6, so invstd^3 ~ 5). BN in training mode couples the whole batch, which the checker
// handles: every finite difference reruns the whole forward. Norm-wise errors stay well under 1e-3.

TEST(BatchNormGradients, TrainingModeMatchesFiniteDifferences) {
  Context ctx(Device::CPU);
  for (const Shape& shape : {Shape{3, 4, 5, 3}, Shape{1, 3, 2, 17}, Shape{7, 5}}) {
    BatchNorm bn(shape[shape.rank - 1]);
    randomize_affine(bn, 1);
    const testing::GradCheckResult r = testing::check_layer_gradients(ctx, bn, random_tensor(shape, 3, -1.0f, 1.0f));
    EXPECT_LT(r.input_error, 1e-3) << shape.str();
    EXPECT_LT(r.parameter_errors.at("weight"), 1e-3) << shape.str();
    EXPECT_LT(r.parameter_errors.at("bias"), 1e-3) << shape.str();
  }
}

TEST(BatchNormGradients, FusedReluMatchesFiniteDifferences) {
  Context ctx(Device::CPU);
  BatchNorm bn(4, {.relu = true});
  bn.weight().value = random_tensor({4}, 5, 0.5f, 1.5f);
  bn.bias().value = random_tensor({4}, 6, -0.1f, 0.1f);
  const testing::GradCheckResult r = testing::check_layer_gradients(ctx, bn, symmetric_away_from_zero({2, 3, 5, 4}, 7));
  EXPECT_LT(r.worst(), 1e-3);
  EXPECT_EQ(r.parameter_errors.size(), 2u);
}

TEST(BatchNormGradients, EvaluationModeMatchesFiniteDifferences) {
  Context ctx(Device::CPU);
  BatchNorm bn(6);
  randomize_affine(bn, 8);
  bn.running_mean().value = random_tensor({6}, 10);
  bn.running_var().value = random_tensor({6}, 11, 0.5f, 2.0f);
  bn.set_training(false);
  const testing::GradCheckResult r = testing::check_layer_gradients(ctx, bn, random_tensor({2, 3, 3, 6}, 12));
  EXPECT_LT(r.worst(), 1e-3);
}

TEST(BatchNormGradients, FixedScaleAndNoAffineMatchFiniteDifferences) {
  Context ctx(Device::CPU);
  BatchNorm fixed(5, {.fixed_scale = true});
  fixed.bias().value = random_tensor({5}, 13);
  const testing::GradCheckResult r = testing::check_layer_gradients(ctx, fixed, random_tensor({6, 5}, 14));
  EXPECT_LT(r.worst(), 1e-3);
  EXPECT_EQ(r.parameter_errors.count("weight"), 0u);  // gamma is not trained
  EXPECT_EQ(r.parameter_errors.count("bias"), 1u);

  BatchNorm plain(3, {.affine = false});
  const testing::GradCheckResult p = testing::check_layer_gradients(ctx, plain, random_tensor({2, 2, 3, 3}, 15));
  EXPECT_LT(p.worst(), 1e-3);
  EXPECT_TRUE(p.parameter_errors.empty());
}

// The residual join fused in: y = relu(bn(x) + shortcut). The shortcut is the normalised value times
// u in [0, 1), so the sum keeps the sign of bn(x) and stays as far from the ReLU's kink; the finite
// differences then check dx, dshortcut and the parameter gradients, in training and evaluation mode.
TEST(BatchNormGradients, ResidualJoinMatchesFiniteDifferences) {
  Context ctx(Device::CPU);
  const Shape shape{2, 3, 5, 4};
  for (bool training : {true, false}) {
    BatchNorm join(4, {.relu = true}), plain(4);
    for (BatchNorm* bn : {&join, &plain}) {
      bn->weight().value = random_tensor({4}, 21, 0.5f, 1.5f);
      // Evaluation normalises with running statistics (mean 0, var 1 here): no beta keeps it off the kink.
      bn->bias().value = training ? random_tensor({4}, 22, -0.1f, 0.1f) : Tensor::zeros({4});
      bn->set_training(training);
    }
    Tensor x = symmetric_away_from_zero(shape, 23);
    Tensor shortcut = plain.forward(ctx, x);
    const Tensor u = random_tensor(shape, 24, 0.0f, 1.0f);
    for (int64_t i = 0; i < shortcut.numel(); ++i) shortcut.data<float>()[i] *= u.data<float>()[i];

    Tensor y = join.forward_join(ctx, x, shortcut);
    const Tensor r = random_tensor(shape, 25);
    join.zero_grad(ctx);
    const BatchNorm::JoinGradients grads = join.backward_join(ctx, r);
    const Tensor dgamma = join.weight().grad.clone(), dbeta = join.bias().grad.clone();
    auto loss = [&] { return testing::weighted_sum(join.forward_join(ctx, x, shortcut), r); };
    EXPECT_LT(testing::check_coordinates(x, grads.dx, loss, 1e-2, 120, 26), 1e-3) << training;
    EXPECT_LT(testing::check_coordinates(shortcut, grads.dshortcut, loss, 1e-2, 120, 27), 1e-3) << training;
    EXPECT_LT(testing::check_coordinates(join.weight().value, dgamma, loss, 1e-2, 4, 28), 1e-3) << training;
    EXPECT_LT(testing::check_coordinates(join.bias().value, dbeta, loss, 1e-2, 4, 29), 1e-3) << training;
    int clamped = 0;
    for (int64_t i = 0; i < y.numel(); ++i) clamped += y.data<float>()[i] == 0.0f;
    EXPECT_GT(clamped, 0) << "the ReLU's mask is exercised";
  }
}

// The fused join against the unfused chain it replaces: BatchNorm, then add, then ReLU (forward), and
// the ReLU's mask, then BatchNorm backward (backward): the same numbers, and backward_join's pairing.
TEST(BatchNormLayer, ResidualJoinEqualsTheUnfusedChainAndChecksItsUse) {
  Context ctx(Device::CPU);
  BatchNorm join(6, {.relu = true}), plain(6);
  randomize_affine(join, 31);
  randomize_affine(plain, 31);
  const Shape shape{3, 4, 2, 6};
  Tensor x = random_tensor(shape, 32, -1.0f, 2.0f), shortcut = random_tensor(shape, 33), dy = random_tensor(shape, 34);
  Tensor y = join.forward_join(ctx, x, shortcut);
  Tensor z = plain.forward(ctx, x);
  Tensor mask_dy = Tensor::empty(shape), want_y = Tensor::empty(shape);
  for (int64_t i = 0; i < z.numel(); ++i) {
    const float sum = z.data<float>()[i] + shortcut.data<float>()[i];
    want_y.data<float>()[i] = std::max(sum, 0.0f);
    mask_dy.data<float>()[i] = sum > 0.0f ? dy.data<float>()[i] : 0.0f;
  }
  EXPECT_LT(relative_error(y, want_y), 1e-6);
  const BatchNorm::JoinGradients grads = join.backward_join(ctx, dy);
  EXPECT_EQ(relative_error(grads.dshortcut, mask_dy), 0.0);
  EXPECT_LT(relative_error(grads.dx, plain.backward(ctx, mask_dy)), 1e-6);
  EXPECT_LT(relative_error(join.weight().grad, plain.weight().grad), 1e-6);
  EXPECT_LT(relative_error(join.bias().grad, plain.bias().grad), 1e-6);

  EXPECT_THROW(join.backward(ctx, dy), Error);  // a join's backward must return dshortcut too
  EXPECT_THROW(join.forward_join(ctx, x, Tensor::zeros({3, 4, 2, 5})), Error);
  plain.forward(ctx, x);
  EXPECT_THROW(plain.backward_join(ctx, dy), Error);  // no shortcut was added
}

// ---- the float64 reference, tightly --------------------------------------------------------------

TEST(BatchNormLayer, MatchesFloat64ReferenceAndAccumulatesGradients) {
  Context ctx(Device::CPU);
  for (bool relu : {false, true}) {
    const Shape shape{3, 5, 2, 17};
    BatchNorm bn(17, {.eps = 1e-4f, .momentum = 0.25f, .relu = relu});
    randomize_affine(bn, 20);
    const std::vector<double> gamma = to_doubles(bn.weight().value), beta = to_doubles(bn.bias().value);
    Tensor x = random_tensor(shape, 22, -1.0f, 3.0f), dy = random_tensor(shape, 23);
    Tensor y = bn.forward(ctx, x);
    const testing::BatchNormReference ref =
        testing::reference_batch_norm_forward(to_doubles(x), 17, gamma, beta, std::vector<double>(17, 0.0),
                                              std::vector<double>(17, 1.0), 1e-4, 0.25, true, relu);
    EXPECT_LT(relative_error(to_doubles(y), ref.y), 1e-6);
    EXPECT_LT(relative_error(to_doubles(bn.running_mean().value), ref.running_mean), 1e-6);
    EXPECT_LT(relative_error(to_doubles(bn.running_var().value), ref.running_var), 1e-6);
    EXPECT_EQ(bn.num_batches_tracked().value.data<int32_t>()[0], 1);

    Tensor dx = bn.backward(ctx, dy);
    bn.backward(ctx, dy);  // parameter gradients add up: now twice the reference
    const testing::BatchNormReferenceGrads grads = testing::reference_batch_norm_backward(
        to_doubles(x), to_doubles(y), to_doubles(dy), 17, gamma, ref.mean, ref.invstd, true, relu);
    std::vector<double> twice_dgamma = grads.dgamma, twice_dbeta = grads.dbeta;
    for (double& v : twice_dgamma) v *= 2;
    for (double& v : twice_dbeta) v *= 2;
    EXPECT_LT(relative_error(to_doubles(dx), grads.dx), 1e-5) << relu;
    EXPECT_LT(relative_error(to_doubles(bn.weight().grad), twice_dgamma), 1e-6) << relu;
    EXPECT_LT(relative_error(to_doubles(bn.bias().grad), twice_dbeta), 1e-6) << relu;
  }
}

// ---- the Layer contract --------------------------------------------------------------------------

TEST(BatchNormLayer, ParametersAreNamedAndFlaggedLikeTorchvision) {
  BatchNorm bn(8);
  const std::vector<NamedParameter> params = bn.named_parameters();
  ASSERT_EQ(params.size(), 5u);
  const char* names[] = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"};
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(params[i].name, names[i]);
  EXPECT_TRUE(bn.weight().trainable && bn.bias().trainable);
  EXPECT_FALSE(bn.weight().decay || bn.bias().decay);  // no weight decay on BN parameters
  EXPECT_FALSE(bn.running_mean().trainable || bn.running_var().trainable || bn.num_batches_tracked().trainable);
  EXPECT_FALSE(bn.running_mean().grad.defined());
  EXPECT_EQ(bn.num_batches_tracked().value.dtype(), DType::I32);
  EXPECT_EQ(bn.num_batches_tracked().value.rank(), 0);  // a scalar, as torchvision's
  for (int64_t c = 0; c < 8; ++c) {
    EXPECT_EQ(bn.weight().value.data<float>()[c], 1.0f);
    EXPECT_EQ(bn.bias().value.data<float>()[c], 0.0f);
    EXPECT_EQ(bn.running_mean().value.data<float>()[c], 0.0f);
    EXPECT_EQ(bn.running_var().value.data<float>()[c], 1.0f);
  }

  BatchNorm fixed(8, {.fixed_scale = true});
  EXPECT_EQ(fixed.named_parameters().size(), 5u);
  EXPECT_FALSE(fixed.weight().trainable);  // InsightFace's features BN: weight present, frozen at 1
  EXPECT_FALSE(fixed.weight().grad.defined());
  EXPECT_TRUE(fixed.bias().trainable);

  BatchNorm plain(8, {.affine = false});
  ASSERT_EQ(plain.named_parameters().size(), 3u);  // running_mean, running_var, num_batches_tracked
  EXPECT_EQ(plain.named_parameters()[0].name, "running_mean");
}

TEST(BatchNormLayer, FrozenLayerComputesDxButNoParameterGradients) {
  Context ctx(Device::CPU);
  BatchNorm bn(3), twin(3);
  randomize_affine(bn, 30);
  randomize_affine(twin, 30);
  bn.set_frozen(true);
  Tensor x = random_tensor({4, 2, 2, 3}, 31), dy = random_tensor({4, 2, 2, 3}, 32);
  bn.forward(ctx, x);
  twin.forward(ctx, x);
  Tensor dx = bn.backward(ctx, dy), want = twin.backward(ctx, dy);
  EXPECT_EQ(relative_error(dx, want), 0.0);
  for (int64_t c = 0; c < 3; ++c) {
    EXPECT_EQ(bn.weight().grad.data<float>()[c], 0.0f);
    EXPECT_EQ(bn.bias().grad.data<float>()[c], 0.0f);
  }
}

TEST(BatchNormLayer, EvaluationUsesAndKeepsTheRunningStatistics) {
  Context ctx(Device::CPU);
  BatchNorm bn(4, {.momentum = 0.5f});
  Tensor x = random_tensor({5, 3, 3, 4}, 40, 1.0f, 3.0f);
  bn.forward(ctx, x);
  bn.forward(ctx, x);  // two updates with momentum 0.5: running = 0.25 * initial + 0.75 * batch
  const Tensor mean = bn.running_mean().value.clone(), var = bn.running_var().value.clone();
  const testing::BatchNormReference batch = testing::reference_batch_norm_forward(
      to_doubles(x), 4, {}, {}, std::vector<double>(4, 0.0), std::vector<double>(4, 1.0), 1e-5, 1.0, true, false);
  for (int64_t c = 0; c < 4; ++c) {
    EXPECT_NEAR(mean.data<float>()[c], 0.75 * batch.running_mean[size_t(c)], 1e-6);
    EXPECT_NEAR(var.data<float>()[c], 0.25 + 0.75 * batch.running_var[size_t(c)], 1e-5);
  }
  EXPECT_EQ(bn.num_batches_tracked().value.data<int32_t>()[0], 2);

  bn.set_training(false);
  Tensor y = bn.forward(ctx, x);
  EXPECT_EQ(relative_error(bn.running_mean().value, mean), 0.0);
  EXPECT_EQ(relative_error(bn.running_var().value, var), 0.0);
  EXPECT_EQ(bn.num_batches_tracked().value.data<int32_t>()[0], 2);
  const testing::BatchNormReference eval = testing::reference_batch_norm_forward(
      to_doubles(x), 4, {}, {}, to_doubles(mean), to_doubles(var), 1e-5, 0.1, false, false);
  EXPECT_LT(relative_error(to_doubles(y), eval.y), 1e-6);
}

TEST(BatchNormLayer, RejectsBadInputsAndOptions) {
  Context ctx(Device::CPU);
  BatchNorm bn(4);
  EXPECT_THROW(bn.forward(ctx, Tensor::zeros({2, 3, 3, 5})), Error);  // wrong channel count
  EXPECT_THROW(bn.forward(ctx, Tensor::zeros({1, 4})), Error);        // one value per channel in training
  EXPECT_THROW(bn.backward(ctx, Tensor::zeros({2, 4})), Error);       // backward before forward
  EXPECT_THROW(BatchNorm(0), Error);
  EXPECT_THROW(BatchNorm(4, {.momentum = 1.5f}), Error);
  EXPECT_THROW(BatchNorm(4, {.eps = 0.0f}), Error);
}

// ---- PyTorch -------------------------------------------------------------------------------------

class BatchNormPytorch : public ::testing::TestWithParam<std::string> {};

// scripts/make_bn_fixture.py: nn.BatchNorm2d / BatchNorm1d (with a ReLU after it for bn2d_relu), one
// training step and one evaluation step, forward and backward.
TEST_P(BatchNormPytorch, MatchesFixture) {
  const std::string path = cuface::testing::fixture_path("batch_norm.safetensors");
  const SafetensorsFile file = load_safetensors(path);
  const std::string prefix = GetParam();
  auto tensor = [&](const std::string& name) { return file.tensors.at(prefix + "." + name); };
  const float eps = std::stof(file.metadata.at(prefix + ".eps"));
  const float momentum = std::stof(file.metadata.at(prefix + ".momentum"));
  const bool relu = file.metadata.at(prefix + ".relu") == "1";
  const Tensor x = tensor("x"), dy = tensor("dy");
  const int64_t C = x.size(-1);

  Context ctx(Device::CPU);
  BatchNorm bn(C, {.eps = eps, .momentum = momentum, .relu = relu});
  bn.weight().value.copy_from(tensor("weight"));
  bn.bias().value.copy_from(tensor("bias"));
  bn.running_mean().value.copy_from(tensor("running_mean_before"));
  bn.running_var().value.copy_from(tensor("running_var_before"));

  for (const std::string mode : {"train", "eval"}) {
    bn.set_training(mode == "train");
    bn.zero_grad(ctx);
    Tensor y = bn.forward(ctx, x);
    Tensor dx = bn.backward(ctx, dy);
    EXPECT_LT(relative_error(y, tensor("y_" + mode)), 1e-4) << mode;
    EXPECT_LT(relative_error(dx, tensor("dx_" + mode)), 1e-4) << mode;
    EXPECT_LT(relative_error(bn.weight().grad, tensor("dweight_" + mode)), 1e-4) << mode;
    EXPECT_LT(relative_error(bn.bias().grad, tensor("dbias_" + mode)), 1e-4) << mode;
    if (mode == "train") {
      EXPECT_LT(relative_error(bn.running_mean().value, tensor("running_mean_after")), 1e-4);
      EXPECT_LT(relative_error(bn.running_var().value, tensor("running_var_after")), 1e-4);
      EXPECT_EQ(bn.num_batches_tracked().value.data<int32_t>()[0],
                tensor("num_batches_tracked_after").data<int32_t>()[0]);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, BatchNormPytorch, ::testing::Values("bn2d", "bn2d_relu", "bn1d"));

// ---- CUDA ----------------------------------------------------------------------------------------

// The layer moved to the GPU runs a training and an evaluation step like the CPU layer.
TEST(BatchNormLayerCuda, MatchesCpuLayer) {
  CUFACE_REQUIRE_GPU();
  Context cpu(Device::CPU), gpu(Device::CUDA);
  BatchNorm host(17, {.relu = true}), device(17, {.relu = true});
  randomize_affine(host, 50);
  randomize_affine(device, 50);
  device.to(Device::CUDA);
  Tensor x = random_tensor({4, 6, 5, 17}, 51, -1.0f, 2.0f), dy = random_tensor({4, 6, 5, 17}, 52);
  for (bool training : {true, false}) {
    host.set_training(training);
    device.set_training(training);
    Tensor y = host.forward(cpu, x), dx = host.backward(cpu, dy);
    Tensor d_y = device.forward(gpu, x.to(Device::CUDA)), d_dx = device.backward(gpu, dy.to(Device::CUDA));
    gpu.synchronize();
    EXPECT_LT(relative_error(d_y, y), 1e-5) << training;
    EXPECT_LT(relative_error(d_dx, dx), 1e-5) << training;
  }
  EXPECT_LT(relative_error(device.weight().grad, host.weight().grad), 1e-5);
  EXPECT_LT(relative_error(device.bias().grad, host.bias().grad), 1e-5);
  EXPECT_LT(relative_error(device.running_mean().value, host.running_mean().value), 1e-5);
  EXPECT_LT(relative_error(device.running_var().value, host.running_var().value), 1e-5);
  EXPECT_EQ(device.num_batches_tracked().value.to(Device::CPU).data<int32_t>()[0], 1);
}

// bf16 activations (a bf16 backbone) with f32 parameters, running statistics and gradients: the layer
// on the GPU follows the f32 CPU layer fed the same (bf16-rounded) values.
TEST(BatchNormLayerCuda, Bf16ActivationsKeepF32StatisticsAndGradients) {
  CUFACE_REQUIRE_GPU();
  Context cpu(Device::CPU), gpu(Device::CUDA);
  gpu.set_precision(Precision::BF16);
  BatchNorm host(24, {.relu = true}), device(24, {.relu = true});
  randomize_affine(host, 60);
  randomize_affine(device, 60);
  device.to(Device::CUDA);
  Tensor x = random_tensor({3, 5, 4, 24}, 61, -1.0f, 2.0f), dy = random_tensor({3, 5, 4, 24}, 62);
  const Tensor gx = testing::upload(x, DType::BF16), gdy = testing::upload(dy, DType::BF16);
  for (bool training : {true, false}) {
    host.set_training(training);
    device.set_training(training);
    Tensor y = host.forward(cpu, x), dx = host.backward(cpu, dy);
    Tensor d_y = device.forward(gpu, gx), d_dx = device.backward(gpu, gdy);
    gpu.synchronize();
    EXPECT_EQ(d_y.dtype(), DType::BF16);
    EXPECT_EQ(d_dx.dtype(), DType::BF16);
    EXPECT_LT(relative_error(testing::host_f32(d_y), y), 1e-2) << training;
    EXPECT_LT(relative_error(testing::host_f32(d_dx), dx), 1e-2) << training;
  }
  EXPECT_LT(relative_error(device.weight().grad, host.weight().grad), 1e-3);
  EXPECT_LT(relative_error(device.bias().grad, host.bias().grad), 1e-3);
  EXPECT_LT(relative_error(device.running_mean().value, host.running_mean().value), 1e-5);
  EXPECT_LT(relative_error(device.running_var().value, host.running_var().value), 1e-5);
}

// The fused residual join on the GPU (f32 and bf16 activations) follows the CPU layer, in training and
// evaluation mode.
TEST(BatchNormLayerCuda, ResidualJoinMatchesCpuLayer) {
  CUFACE_REQUIRE_GPU();
  Context cpu(Device::CPU), gpu(Device::CUDA);
  for (DType dtype : {DType::F32, DType::BF16}) {
    const double bound = dtype == DType::F32 ? 1e-5 : 2e-2;
    BatchNorm host(20, {.relu = true}), device(20, {.relu = true});
    randomize_affine(host, 70);
    randomize_affine(device, 70);
    device.to(Device::CUDA);
    const Shape shape{4, 5, 3, 20};
    // upload rounds bf16 values in place: the CPU layer is given what the GPU sees.
    Tensor x = random_tensor(shape, 71, -1.0f, 2.0f), shortcut = random_tensor(shape, 72);
    Tensor dy = random_tensor(shape, 73);
    const Tensor d_x = testing::upload(x, dtype), d_shortcut = testing::upload(shortcut, dtype);
    const Tensor d_dy = testing::upload(dy, dtype);
    for (bool training : {true, false}) {
      host.set_training(training);
      device.set_training(training);
      Tensor y = host.forward_join(cpu, x, shortcut);
      const BatchNorm::JoinGradients want = host.backward_join(cpu, dy);
      Tensor d_y = device.forward_join(gpu, d_x, d_shortcut);
      const BatchNorm::JoinGradients got = device.backward_join(gpu, d_dy);
      gpu.synchronize();
      EXPECT_LT(relative_error(testing::host_f32(d_y), y), bound) << dtype_name(dtype) << training;
      EXPECT_LT(relative_error(testing::host_f32(got.dx), want.dx), bound) << dtype_name(dtype) << training;
      EXPECT_LT(relative_error(testing::host_f32(got.dshortcut), want.dshortcut), bound)
          << dtype_name(dtype) << training;
    }
    EXPECT_LT(relative_error(device.weight().grad, host.weight().grad), dtype == DType::F32 ? 1e-5 : 1e-3);
    EXPECT_LT(relative_error(device.bias().grad, host.bias().grad), dtype == DType::F32 ? 1e-5 : 1e-3);
  }
}

}  // namespace
}  // namespace cuface
