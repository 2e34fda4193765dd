// Batch norm kernels: the CPU kernels against a naive float64 reference (two-pass statistics, the
// unfused textbook chain rule for backward), then every CUDA kernel against its CPU twin.
#include <gtest/gtest.h>

#include <cmath>

#include "common/backends.h"
#include "common/batch_norm_reference.h"
#include "common/device_compare.h"
#include "common/reference.h"
#include "kernels/batchnorm.h"
#include "kernels/elementwise.h"

namespace cuface {
namespace {

using testing::BatchNormReference;
using testing::BatchNormReferenceGrads;
using testing::host_f32;
using testing::poisoned;
using testing::random_tensor;
using testing::reference_batch_norm_backward;
using testing::reference_batch_norm_forward;
using testing::relative_error;
using testing::to_doubles;
using testing::upload;

std::vector<double> doubles(const Tensor& t) {
  return t.defined() ? to_doubles(t) : std::vector<double>{};
}

// ---- CPU against the reference -----------------------------------------------------------------

struct Case {
  Shape shape;
  bool affine;
  bool relu;
  bool residual = false;  // the residual join fused in: y = act(bn(x) + r)
};

// Odd shapes: batch 1 and 3, C = 1, 3, 17, non-square H x W; 2-d (BatchNorm1d) and 4-d (BatchNorm2d);
// with and without a residual.
const Case kCases[] = {
    {{1, 3, 5, 17}, true, false}, {{3, 4, 2, 3}, true, true},        {{3, 7, 5, 1}, false, false},
    {{2, 1, 6, 3}, false, true},  {{3, 17}, true, false},            {{7, 1}, true, true},
    {{5, 3}, false, false},       {{3, 4, 2, 17}, true, true, true}, {{2, 5, 3, 3}, true, false, true},
    {{6, 5}, false, true, true},
};

// "3x4x2x3_affine_relu": readable test names.
std::string shape_name(const Shape& shape) {
  std::string name;
  for (int i = 0; i < shape.rank; ++i) {
    if (i > 0) name += 'x';
    name += std::to_string(shape[i]);
  }
  return name;
}
std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return shape_name(info.param.shape) + (info.param.affine ? "_affine" : "") + (info.param.relu ? "_relu" : "") +
         (info.param.residual ? "_residual" : "");
}

class BatchNormCpu : public ::testing::TestWithParam<Case> {
 protected:
  Context ctx{Device::CPU};
};

TEST_P(BatchNormCpu, TrainingForwardAndBackwardMatchFloat64) {
  const Case& k = GetParam();
  const int64_t C = k.shape[k.shape.rank - 1];
  // Data off centre (mean ~1.5, spread ~0.6), so a naive fp32 sum-of-squares would be visibly off.
  Tensor x = random_tensor(k.shape, 1, 0.5f, 2.5f);
  Tensor gamma = k.affine ? random_tensor({C}, 2, 0.5f, 1.5f) : Tensor();
  Tensor beta = k.affine ? random_tensor({C}, 3, -0.5f, 0.5f) : Tensor();
  Tensor running_mean = random_tensor({C}, 4), running_var = random_tensor({C}, 5, 0.5f, 2.0f);
  const std::vector<double> rm0 = to_doubles(running_mean), rv0 = to_doubles(running_var);
  Tensor tracked = Tensor::zeros({}, DType::I32);
  tracked.data<int32_t>()[0] = 41;
  Tensor residual = k.residual ? random_tensor(k.shape, 9, -1.0f, 1.0f) : Tensor();
  Tensor y = Tensor::empty(k.shape), mean = Tensor::empty({C}), invstd = Tensor::empty({C});
  const float eps = 1e-5f, momentum = 0.1f;
  batch_norm_forward_train(ctx, x, residual, gamma, beta, eps, momentum, k.relu, running_mean, running_var, tracked, y,
                           mean, invstd);
  const BatchNormReference ref = reference_batch_norm_forward(to_doubles(x), C, doubles(gamma), doubles(beta), rm0, rv0,
                                                              eps, momentum, true, k.relu, doubles(residual));
  EXPECT_LT(relative_error(to_doubles(y), ref.y), 1e-6);
  EXPECT_LT(relative_error(to_doubles(mean), ref.mean), 1e-6);
  EXPECT_LT(relative_error(to_doubles(invstd), ref.invstd), 1e-6);
  EXPECT_LT(relative_error(to_doubles(running_mean), ref.running_mean), 1e-6);
  EXPECT_LT(relative_error(to_doubles(running_var), ref.running_var), 1e-6);
  EXPECT_EQ(tracked.data<int32_t>()[0], 42);

  // Backward; parameter gradients accumulate onto what is already there.
  Tensor dy = random_tensor(k.shape, 6);
  Tensor dx = Tensor::empty(k.shape), dresidual = k.residual ? Tensor::empty(k.shape) : Tensor();
  Tensor dgamma = k.affine ? random_tensor({C}, 7) : Tensor(), dbeta = k.affine ? random_tensor({C}, 8) : Tensor();
  const std::vector<double> dgamma0 = doubles(dgamma), dbeta0 = doubles(dbeta);
  batch_norm_backward(ctx, x, y, dy, gamma, mean, invstd, true, k.relu, dx, dresidual, dgamma, dbeta);
  const BatchNormReferenceGrads grads = reference_batch_norm_backward(
      to_doubles(x), to_doubles(y), to_doubles(dy), C, doubles(gamma), ref.mean, ref.invstd, true, k.relu);
  EXPECT_LT(relative_error(to_doubles(dx), grads.dx), 1e-5);
  if (k.residual) {
    EXPECT_EQ(relative_error(to_doubles(dresidual), grads.dz), 0.0);  // dy or 0, exactly
  }
  if (k.affine) {
    std::vector<double> want_dgamma = grads.dgamma, want_dbeta = grads.dbeta;
    for (int64_t c = 0; c < C; ++c) {
      want_dgamma[size_t(c)] += dgamma0[size_t(c)];
      want_dbeta[size_t(c)] += dbeta0[size_t(c)];
    }
    EXPECT_LT(relative_error(to_doubles(dgamma), want_dgamma), 1e-6);
    EXPECT_LT(relative_error(to_doubles(dbeta), want_dbeta), 1e-6);
  }
}

TEST_P(BatchNormCpu, EvaluationForwardAndBackwardMatchFloat64) {
  const Case& k = GetParam();
  const int64_t C = k.shape[k.shape.rank - 1];
  Tensor x = random_tensor(k.shape, 11, -2.0f, 2.0f);
  Tensor gamma = k.affine ? random_tensor({C}, 12, -1.5f, 1.5f) : Tensor();
  Tensor beta = k.affine ? random_tensor({C}, 13) : Tensor();
  Tensor running_mean = random_tensor({C}, 14), running_var = random_tensor({C}, 15, 0.1f, 3.0f);
  const Tensor rm0 = running_mean.clone(), rv0 = running_var.clone();
  Tensor residual = k.residual ? random_tensor(k.shape, 17, -1.0f, 1.0f) : Tensor();
  Tensor y = Tensor::empty(k.shape), mean = Tensor::empty({C}), invstd = Tensor::empty({C});
  const float eps = 1e-3f;
  batch_norm_forward_eval(ctx, x, residual, gamma, beta, running_mean, running_var, eps, k.relu, y, mean, invstd);
  const BatchNormReference ref =
      reference_batch_norm_forward(to_doubles(x), C, doubles(gamma), doubles(beta), to_doubles(rm0), to_doubles(rv0),
                                   eps, 0.1, false, k.relu, doubles(residual));
  EXPECT_LT(relative_error(to_doubles(y), ref.y), 1e-6);
  EXPECT_LT(relative_error(to_doubles(invstd), ref.invstd), 1e-6);
  EXPECT_EQ(relative_error(to_doubles(mean), to_doubles(rm0)), 0.0);
  EXPECT_EQ(relative_error(to_doubles(running_mean), to_doubles(rm0)), 0.0);  // evaluation updates nothing
  EXPECT_EQ(relative_error(to_doubles(running_var), to_doubles(rv0)), 0.0);

  Tensor dy = random_tensor(k.shape, 16);
  Tensor dx = Tensor::empty(k.shape), dresidual = k.residual ? Tensor::empty(k.shape) : Tensor();
  Tensor dgamma = k.affine ? Tensor::zeros({C}) : Tensor(), dbeta = k.affine ? Tensor::zeros({C}) : Tensor();
  batch_norm_backward(ctx, x, y, dy, gamma, mean, invstd, false, k.relu, dx, dresidual, dgamma, dbeta);
  const BatchNormReferenceGrads grads = reference_batch_norm_backward(
      to_doubles(x), to_doubles(y), to_doubles(dy), C, doubles(gamma), ref.mean, ref.invstd, false, k.relu);
  EXPECT_LT(relative_error(to_doubles(dx), grads.dx), 1e-6);
  if (k.residual) {
    EXPECT_EQ(relative_error(to_doubles(dresidual), grads.dz), 0.0);
  }
  if (k.affine) {
    EXPECT_LT(relative_error(to_doubles(dgamma), grads.dgamma), 1e-6);
    EXPECT_LT(relative_error(to_doubles(dbeta), grads.dbeta), 1e-6);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, BatchNormCpu, ::testing::ValuesIn(kCases), case_name);

// Activations far from zero relative to their spread (mean 1000, spread ~0.6): the statistics must not
// lose the variance to cancellation.
TEST(BatchNormCpuNumerics, LargeOffsetKeepsTheVariance) {
  Context ctx(Device::CPU);
  Tensor x = random_tensor({4, 9, 7, 5}, 21, 999.0f, 1001.0f);
  Tensor running_mean = Tensor::zeros({5}), running_var = Tensor::zeros({5}), none;
  Tensor y = Tensor::empty(x.shape()), mean = Tensor::empty({5}), invstd = Tensor::empty({5});
  batch_norm_forward_train(ctx, x, none, none, none, 1e-5f, 1.0f, false, running_mean, running_var, none, y, mean,
                           invstd);
  const BatchNormReference ref = reference_batch_norm_forward(to_doubles(x), 5, {}, {}, std::vector<double>(5, 0.0),
                                                              std::vector<double>(5, 0.0), 1e-5, 1.0, true, false);
  EXPECT_LT(relative_error(to_doubles(invstd), ref.invstd), 1e-6);
  EXPECT_LT(relative_error(to_doubles(running_var), ref.running_var), 1e-6);
  // y is limited by fp32 itself: x and the mean carry ~1000 * 6e-8 absolute rounding each.
  EXPECT_LT(relative_error(to_doubles(y), ref.y), 1e-4);
}

TEST(BatchNormChecks, RejectsBadArguments) {
  Context ctx(Device::CPU);
  Tensor x = random_tensor({2, 3, 3, 4}, 1);
  Tensor y = Tensor::empty(x.shape()), mean = Tensor::empty({4}), invstd = Tensor::empty({4});
  Tensor rm = Tensor::zeros({4}), rv = Tensor::zeros({4}), none;
  auto train = [&](const Tensor& input, Tensor& output, const Tensor& gamma, Tensor& m) {
    batch_norm_forward_train(ctx, input, none, gamma, none, 1e-5f, 0.1f, false, rm, rv, none, output, m, invstd);
  };
  EXPECT_NO_THROW(train(x, y, none, mean));
  Tensor wrong_y = Tensor::empty({2, 3, 4, 3});
  EXPECT_THROW(train(x, wrong_y, none, mean), Error);
  EXPECT_THROW(train(x, y, Tensor::zeros({3}), mean), Error);  // gamma of the wrong size
  EXPECT_THROW(train(x, y, none, none), Error);                // mean missing
  Tensor one_row = random_tensor({1, 4}, 2), one_row_y = Tensor::empty({1, 4});
  EXPECT_THROW(train(one_row, one_row_y, none, mean), Error);  // one value per channel: no variance
  Tensor half = Tensor::zeros(x.shape(), DType::BF16), half_y = Tensor::zeros(x.shape(), DType::BF16);
  EXPECT_THROW(train(half, half_y, none, mean), Error);  // bf16 is for CUDA only
  Tensor dx = Tensor::empty(x.shape());
  EXPECT_THROW(batch_norm_backward(ctx, x, none, x, none, mean, invstd, true, true, dx, none, none, none),
               Error);  // relu needs y
  Tensor wrong_residual = Tensor::empty({2, 3, 4, 3});
  EXPECT_THROW(batch_norm_forward_train(ctx, x, wrong_residual, none, none, 1e-5f, 0.1f, false, rm, rv, none, y, mean,
                                        invstd),
               Error);
  EXPECT_THROW(batch_norm_backward(ctx, x, y, x, none, mean, invstd, true, false, dx, wrong_residual, none, none),
               Error);
}

// ---- CUDA against the CPU twin -------------------------------------------------------------------

struct CudaCase {
  Shape shape;
  DType dtype;
  bool relu;
  bool residual = false;
};

class BatchNormCuda : public ::testing::TestWithParam<CudaCase> {};
std::string cuda_case_name(const ::testing::TestParamInfo<CudaCase>& info) {
  return shape_name(info.param.shape) + "_" + dtype_name(info.param.dtype) + (info.param.relu ? "_relu" : "") +
         (info.param.residual ? "_residual" : "");
}

// The whole life of a BN on both backends: training forward (statistics, running update), backward
// with batch statistics, evaluation forward and backward with running statistics.
TEST_P(BatchNormCuda, MatchesCpu) {
  CUFACE_REQUIRE_GPU();
  const CudaCase& k = GetParam();
  const int64_t C = k.shape[k.shape.rank - 1];
  const double bound = k.dtype == DType::F32 ? 1e-5 : 2e-2;
  Context cpu(Device::CPU), gpu(Device::CUDA);
  Tensor x = random_tensor(k.shape, 31, -1.0f, 2.0f), dy = random_tensor(k.shape, 32);
  Tensor gamma = random_tensor({C}, 33, 0.5f, 1.5f), beta = random_tensor({C}, 34);
  Tensor rm = random_tensor({C}, 35), rv = random_tensor({C}, 36, 0.5f, 2.0f);
  Tensor dgamma = random_tensor({C}, 37), dbeta = random_tensor({C}, 38);
  Tensor tracked = Tensor::zeros({}, DType::I32);
  // upload rounds a bf16 residual in place, so the CPU run adds the values the GPU sees.
  Tensor residual = k.residual ? random_tensor(k.shape, 39) : Tensor();
  Tensor d_x = upload(x, k.dtype), d_dy = upload(dy, k.dtype);
  Tensor d_residual = k.residual ? upload(residual, k.dtype) : Tensor();
  Tensor d_gamma = gamma.to(Device::CUDA), d_beta = beta.to(Device::CUDA), d_rm = rm.to(Device::CUDA),
         d_rv = rv.to(Device::CUDA), d_dgamma = dgamma.to(Device::CUDA), d_dbeta = dbeta.to(Device::CUDA),
         d_tracked = tracked.to(Device::CUDA);

  // CPU reference run.
  Tensor y = Tensor::empty(k.shape), mean = Tensor::empty({C}), invstd = Tensor::empty({C}),
         dx = Tensor::empty(k.shape), dresidual = k.residual ? Tensor::empty(k.shape) : Tensor();
  batch_norm_forward_train(cpu, x, residual, gamma, beta, 1e-5f, 0.1f, k.relu, rm, rv, tracked, y, mean, invstd);
  batch_norm_backward(cpu, x, y, dy, gamma, mean, invstd, true, k.relu, dx, dresidual, dgamma, dbeta);
  Tensor y_eval = Tensor::empty(k.shape), dx_eval = Tensor::empty(k.shape);
  Tensor dresidual_eval = k.residual ? Tensor::empty(k.shape) : Tensor();
  Tensor mean_eval = Tensor::empty({C}), invstd_eval = Tensor::empty({C});
  batch_norm_forward_eval(cpu, x, residual, gamma, beta, rm, rv, 1e-5f, k.relu, y_eval, mean_eval, invstd_eval);
  batch_norm_backward(cpu, x, y_eval, dy, gamma, mean_eval, invstd_eval, false, k.relu, dx_eval, dresidual_eval, dgamma,
                      dbeta);

  // The same on the GPU, every output poisoned first.
  Tensor d_y = poisoned(k.shape, k.dtype), d_mean = poisoned({C}, DType::F32), d_invstd = poisoned({C}, DType::F32);
  Tensor d_dx = poisoned(k.shape, k.dtype), d_dresidual = k.residual ? poisoned(k.shape, k.dtype) : Tensor();
  batch_norm_forward_train(gpu, d_x, d_residual, d_gamma, d_beta, 1e-5f, 0.1f, k.relu, d_rm, d_rv, d_tracked, d_y,
                           d_mean, d_invstd);
  batch_norm_backward(gpu, d_x, d_y, d_dy, d_gamma, d_mean, d_invstd, true, k.relu, d_dx, d_dresidual, d_dgamma,
                      d_dbeta);
  gpu.synchronize();
  EXPECT_LT(relative_error(host_f32(d_y), y), bound);
  EXPECT_LT(relative_error(host_f32(d_mean), mean), 1e-5);
  EXPECT_LT(relative_error(host_f32(d_invstd), invstd), 1e-5);
  EXPECT_LT(relative_error(host_f32(d_dx), dx), bound);
  // g is dy or 0: exact in either dtype wherever both backends agree on the ReLU's mask, so the
  // bf16 bound only covers the few elements whose sum rounds across zero.
  if (k.residual) {
    EXPECT_LT(relative_error(host_f32(d_dresidual), dresidual), k.dtype == DType::F32 ? 1e-6 : bound);
  }
  EXPECT_EQ(d_tracked.to(Device::CPU).data<int32_t>()[0], 1);

  Tensor d_y_eval = poisoned(k.shape, k.dtype), d_dx_eval = poisoned(k.shape, k.dtype);
  Tensor d_dresidual_eval = k.residual ? poisoned(k.shape, k.dtype) : Tensor();
  Tensor d_mean_eval = poisoned({C}, DType::F32), d_invstd_eval = poisoned({C}, DType::F32);
  batch_norm_forward_eval(gpu, d_x, d_residual, d_gamma, d_beta, d_rm, d_rv, 1e-5f, k.relu, d_y_eval, d_mean_eval,
                          d_invstd_eval);
  batch_norm_backward(gpu, d_x, d_y_eval, d_dy, d_gamma, d_mean_eval, d_invstd_eval, false, k.relu, d_dx_eval,
                      d_dresidual_eval, d_dgamma, d_dbeta);
  gpu.synchronize();
  EXPECT_LT(relative_error(host_f32(d_rm), rm), 1e-5);
  EXPECT_LT(relative_error(host_f32(d_rv), rv), 1e-5);
  EXPECT_LT(relative_error(host_f32(d_y_eval), y_eval), bound);
  EXPECT_LT(relative_error(host_f32(d_invstd_eval), invstd_eval), 1e-5);
  EXPECT_LT(relative_error(host_f32(d_dx_eval), dx_eval), bound);
  if (k.residual) {
    EXPECT_LT(relative_error(host_f32(d_dresidual_eval), dresidual_eval), k.dtype == DType::F32 ? 1e-6 : bound);
  }
  EXPECT_LT(relative_error(host_f32(d_dgamma), dgamma), bound);  // both backwards accumulated
  EXPECT_LT(relative_error(host_f32(d_dbeta), dbeta), bound);
}

// Small and odd (C = 1, 3, 17, 100: partial channel blocks), and ResNet-sized so that rows split into
// many slabs.
INSTANTIATE_TEST_SUITE_P(
    Shapes, BatchNormCuda,
    ::testing::Values(CudaCase{{3, 5, 7, 17}, DType::F32, false}, CudaCase{{1, 9, 4, 1}, DType::F32, true},
                      CudaCase{{6, 3}, DType::F32, false}, CudaCase{{5, 100}, DType::F32, true},
                      CudaCase{{16, 28, 28, 64}, DType::F32, true}, CudaCase{{4, 7, 7, 2048}, DType::F32, false},
                      CudaCase{{3, 5, 7, 17}, DType::BF16, true}, CudaCase{{16, 28, 28, 64}, DType::BF16, false},
                      CudaCase{{4, 7, 7, 2048}, DType::BF16, true}, CudaCase{{3, 5, 7, 17}, DType::F32, true, true},
                      CudaCase{{16, 28, 28, 64}, DType::F32, false, true},
                      CudaCase{{16, 28, 28, 64}, DType::BF16, true, true}),
    cuda_case_name);

// Far from zero the GPU's shifted Welford statistics stay as exact as the CPU's double sums.
TEST(BatchNormCudaNumerics, LargeOffsetMatchesCpu) {
  CUFACE_REQUIRE_GPU();
  Context cpu(Device::CPU), gpu(Device::CUDA);
  const Shape shape{8, 20, 20, 32};
  Tensor x = random_tensor(shape, 41, 999.0f, 1001.0f), none;
  Tensor rm = Tensor::zeros({32}), rv = Tensor::zeros({32});
  Tensor d_x = x.to(Device::CUDA), d_rm = rm.to(Device::CUDA), d_rv = rv.to(Device::CUDA);
  Tensor y = Tensor::empty(shape), mean = Tensor::empty({32}), invstd = Tensor::empty({32});
  batch_norm_forward_train(cpu, x, none, none, none, 1e-5f, 1.0f, false, rm, rv, none, y, mean, invstd);
  Tensor d_y = poisoned(shape, DType::F32), d_mean = poisoned({32}, DType::F32), d_invstd = poisoned({32}, DType::F32);
  batch_norm_forward_train(gpu, d_x, none, none, none, 1e-5f, 1.0f, false, d_rm, d_rv, none, d_y, d_mean, d_invstd);
  gpu.synchronize();
  EXPECT_LT(relative_error(host_f32(d_invstd), invstd), 1e-5);
  EXPECT_LT(relative_error(host_f32(d_rv), rv), 1e-5);
  EXPECT_LT(relative_error(host_f32(d_mean), mean), 1e-7);
  EXPECT_LT(relative_error(host_f32(d_y), y), 1e-4);  // fp32 itself: see LargeOffsetKeepsTheVariance
}


// The synchronised-BN kernels (moments about the running mean, statistics from summed moments, the
// input gradient's global terms) on the GPU against their CPU twins, f32 and bf16 activations. Here
// the moments come from one rank's rows; the layer sums them over ranks in between.
class BatchNormSyncCuda : public ::testing::TestWithParam<CudaCase> {};

TEST_P(BatchNormSyncCuda, MatchesCpu) {
  CUFACE_REQUIRE_GPU();
  const CudaCase& k = GetParam();
  const int64_t C = k.shape[k.shape.rank - 1], rows = k.shape.numel() / C;
  const double bound = k.dtype == DType::F32 ? 1e-5 : 2e-2;
  Context cpu(Device::CPU), gpu(Device::CUDA);
  Tensor x = random_tensor(k.shape, 61, -1.0f, 2.0f), dx = random_tensor(k.shape, 62);
  Tensor rm = random_tensor({C}, 63), rv = random_tensor({C}, 64, 0.5f, 2.0f);
  Tensor gamma = random_tensor({C}, 65, 0.5f, 1.5f), invstd = random_tensor({C}, 66, 0.5f, 2.0f);
  Tensor sums = random_tensor({2, C}, 67, -5.0f, 5.0f);
  Tensor tracked = Tensor::zeros({}, DType::I32);
  Tensor d_x = upload(x, k.dtype), d_dx = upload(dx, k.dtype);
  Tensor d_rm = rm.to(Device::CUDA), d_rv = rv.to(Device::CUDA), d_gamma = gamma.to(Device::CUDA),
         d_invstd = invstd.to(Device::CUDA), d_sums = sums.to(Device::CUDA), d_tracked = tracked.to(Device::CUDA);

  Tensor moments = Tensor::empty({2, C}), mean = Tensor::empty({C}), var = Tensor::empty({C});
  batch_norm_moments(cpu, x, rm, moments);
  batch_norm_stats_from_moments(cpu, moments, rows, 0.1f, rm, rv, tracked, mean, var);
  batch_norm_sync_input_grad(cpu, x, gamma, mean, invstd, sums, rows, dx);

  Tensor d_moments = poisoned({2, C}, DType::F32), d_mean = poisoned({C}, DType::F32), d_var = poisoned({C}, DType::F32);
  batch_norm_moments(gpu, d_x, d_rm, d_moments);
  batch_norm_stats_from_moments(gpu, d_moments, rows, 0.1f, d_rm, d_rv, d_tracked, d_mean, d_var);
  batch_norm_sync_input_grad(gpu, d_x, d_gamma, d_mean, d_invstd, d_sums, rows, d_dx);
  gpu.synchronize();
  EXPECT_LT(relative_error(host_f32(d_moments), moments), 1e-5);  // the same (rounded) inputs: f32 sums
  EXPECT_LT(relative_error(host_f32(d_mean), mean), 1e-5);
  EXPECT_LT(relative_error(host_f32(d_var), var), 1e-5);
  EXPECT_LT(relative_error(host_f32(d_rm), rm), 1e-5);
  EXPECT_LT(relative_error(host_f32(d_rv), rv), 1e-5);
  EXPECT_EQ(d_tracked.to(Device::CPU).data<int32_t>()[0], 1);
  EXPECT_LT(relative_error(host_f32(d_dx), dx), bound);
}

INSTANTIATE_TEST_SUITE_P(Shapes, BatchNormSyncCuda,
                         ::testing::Values(CudaCase{{3, 5, 7, 17}, DType::F32, false}, CudaCase{{6, 3}, DType::F32, false},
                                           CudaCase{{16, 28, 28, 64}, DType::F32, false},
                                           CudaCase{{3, 5, 7, 17}, DType::BF16, false},
                                           CudaCase{{16, 28, 28, 64}, DType::BF16, false}),
                         cuda_case_name);


// Statistics from summed moments on both backends: a NaN moment (a NaN activation on some rank) makes
// its channel's mean, variance and running statistics NaN; a variance that rounds below zero is 0.
class BatchNormSyncStatistics : public testing::BackendTest {};

TEST_P(BatchNormSyncStatistics, KeepNanAndClampRoundingAtZero) {
  // Channel 0: S1 = 4, S2 = 8 over 4 rows: offset 1, var 1. Channel 1: S2 NaN. Channel 2: S2 / n one
  // float below offset^2 = 4 (a variance that rounding pushed below zero): clamped to 0.
  Tensor moments = Tensor::empty({2, 3});
  const float values[6] = {4.0f, 8.0f, 8.0f, 8.0f, NAN, std::nextafter(16.0f, 0.0f)};
  for (int i = 0; i < 6; ++i) moments.data<float>()[i] = values[i];
  Tensor rm = Tensor::zeros({3}).to(device()), rv = Tensor::zeros({3}).to(device()), none;
  Tensor mean = Tensor::empty({3}, DType::F32, device()), var = Tensor::empty({3}, DType::F32, device());
  batch_norm_stats_from_moments(ctx(), moments.to(device()), 4, 1.0f, rm, rv, none, mean, var);
  ctx().synchronize();
  const std::vector<double> m = to_doubles(mean), v = to_doubles(var), r = to_doubles(rv);
  EXPECT_EQ(m[0], 1.0);
  EXPECT_EQ(v[0], 1.0);
  EXPECT_NEAR(r[0], 4.0 / 3.0, 1e-7);  // unbiased: var * n / (n - 1)
  EXPECT_TRUE(std::isnan(v[1]));
  EXPECT_TRUE(std::isnan(r[1]));
  EXPECT_EQ(m[2], 2.0);
  EXPECT_EQ(v[2], 0.0);
}
CUFACE_ON_EVERY_BACKEND(BatchNormSyncStatistics);

}  // namespace
}  // namespace cuface
